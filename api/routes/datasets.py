"""/v1/datasets: upload a CSV once, reference it from training jobs by id."""

from __future__ import annotations

import csv
import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Path, Query
from pydantic import BaseModel, Field

from api.deps import Reader, SessionDep, SettingsDep, Submitter
from qorchestra.jobs.errors import FieldError, SpecError
from qorchestra.store import repository as repo
from qorchestra.store.models import DatasetRow
from qorchestra.training.data import DataError, parse_csv

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

_EXAMPLE_CSV = "x,y,label\n0.1,0.9,a\n0.8,0.2,b\n0.2,0.7,a\n0.9,0.1,b\n"


class DatasetPublic(BaseModel):
    """An uploaded dataset, without its rows."""

    id: str = Field(description="The dataset's id (a UUID): a train job's `data.dataset_id`.")
    name: str = Field(description="The label given on upload (may be empty).")
    rows: int = Field(description="Samples (CSV rows after the header).")
    feature_names: list[str] = Field(description="Feature columns, in the order jobs use them.")
    classes: list[str] = Field(description="Class names; a label is an index into this list.")
    created_at: datetime = Field(description="When it was uploaded (UTC).")

    @classmethod
    def of(cls, row: DatasetRow) -> DatasetPublic:
        return cls(
            id=row.id,
            name=row.name,
            rows=row.rows,
            feature_names=row.feature_names,
            classes=row.classes,
            created_at=row.created_at,
        )


class DatasetsPublic(BaseModel):
    """One page of datasets, newest first."""

    data: list[DatasetPublic] = Field(description="The datasets of this page.")
    count: int = Field(description="Datasets visible to the caller, over all pages.")


@router.post("", status_code=201, response_model=DatasetPublic, summary="Upload a CSV dataset")
def upload_dataset(
    principal: Submitter,
    session: SessionDep,
    settings: SettingsDep,
    csv_text: Annotated[
        str,
        Body(
            media_type="text/csv",
            description="A header row, then one sample per row: numeric features and a label.",
            examples=[_EXAMPLE_CSV],
        ),
    ],
    name: Annotated[str, Query(max_length=200, description="A label for people.")] = "",
    label_column: Annotated[
        str, Query(min_length=1, description="The column that holds the class labels.")
    ] = "label",
) -> DatasetPublic:
    """Parse and store a CSV (`Content-Type: text/csv`); 422 names the line at fault."""
    try:
        data = parse_csv(csv_text, label_column)
    except (DataError, csv.Error) as exc:  # csv.Error: e.g. a bare carriage return
        raise SpecError([FieldError(("csv",), str(exc))]) from exc
    if data.rows > settings.max_training_samples:
        raise SpecError(
            [FieldError(("csv",), f"{data.rows} rows; at most {settings.max_training_samples}")]
        )
    row = DatasetRow(
        id=str(uuid.uuid4()),
        tenant=principal.tenant,
        name=name,
        rows=data.rows,
        feature_names=list(data.feature_names),
        classes=list(data.classes),
        features=data.features.tolist(),
        labels=data.labels.tolist(),
    )
    with session.begin():
        session.add(row)
        session.flush()
        session.refresh(row)
    return DatasetPublic.of(row)


@router.get("", response_model=DatasetsPublic, summary="List datasets")
def list_datasets(
    principal: Reader,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500, description="Page size.")] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31, description="Datasets to skip.")] = 0,
) -> DatasetsPublic:
    """The tenant's uploaded datasets (an admin's: all), newest first."""
    rows, count = repo.list_datasets(
        session, limit=limit, offset=offset, tenant=principal.tenant_filter
    )
    return DatasetsPublic(data=[DatasetPublic.of(r) for r in rows], count=count)


@router.get("/{dataset_id}", response_model=DatasetPublic, summary="Read a dataset")
def get_dataset(
    dataset_id: Annotated[str, Path(description="The id returned on upload.")],
    principal: Reader,
    session: SessionDep,
) -> DatasetPublic:
    """A dataset's shape and classes."""
    return DatasetPublic.of(repo.get_dataset(session, dataset_id, principal.tenant_filter))

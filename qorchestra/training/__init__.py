"""Training and minimisation maths: pure model, data, gradient, optimizer and cutting logic.
The step engine that turns each optimisation step into fragments and back is the
orchestrator's (``orchestrator/training_steps.py``)."""

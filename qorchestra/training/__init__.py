"""Training and minimisation jobs: pure model, data, gradient and optimizer logic, plus the
store-facing runner that turns each optimisation step into fragments and back."""

"""Example job specs (data only): loaded by ``qorchestra.examples``, never imported."""

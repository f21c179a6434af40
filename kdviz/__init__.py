"""kdviz: see, change and run knowledge distillation (Hinton, Vinyals & Dean 2015)."""

__version__ = "0.1.0"

"""amlr: run R scripts and R pipelines locally or on Azure Machine Learning.

Importing this package is cheap on purpose: the Azure SDKs are imported only
by the backend that needs them.
"""
__version__ = "0.1.0"

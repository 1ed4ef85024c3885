"""The MLflow models-from-code entry of every model :meth:`equiseg.tracking.Tracker.log_model` logs.

MLflow runs this script when *it* loads the model (``mlflow.pyfunc.load_model``, ``mlflow models serve``); it only
names the wrapper class, so the logged model holds no pickled code (docs/operations.md, "Serving"). equiseg's own
:func:`~equiseg.tracking.load_model` never runs it.
"""

from mlflow.models import set_model

from equiseg.tracking.models import EquisegPyfuncModel

set_model(EquisegPyfuncModel())

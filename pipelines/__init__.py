"""The equiseg retraining pipeline: composition (`retrain`), cluster decoration (`platform`), local run, cluster
compile/submit/schedule, and the `equiseg pipeline` commands (plugged into the CLI via an entry point)."""

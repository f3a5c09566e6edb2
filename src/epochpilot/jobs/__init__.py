"""The main job: the job spec read from TOML (spec, check), the default models (models), the pipeline that
loads data, trains and keeps the model (pipeline) and the saved predictor (predictor).

Imports core, data, train and report; never select, finetune, integrations or cli.
"""

"""leadscore: scores B2B leads 1-5 with XGBoost and records every prediction in a data lake."""

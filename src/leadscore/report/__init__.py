"""The model judged on the customer's business: scores joined to outcomes, drift, and the reports people read."""

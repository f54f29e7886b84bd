"""leadscore's AWS infrastructure (CDK): one definition, instantiated for dev and prod."""

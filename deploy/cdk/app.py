"""CDK entry point (cdk.json runs it): `cdk synth`, `cdk deploy leadscore-dev --parameters ImageTag=...`."""

from leadscore_infra.app import build_app

build_app().synth()

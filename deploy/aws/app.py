"""The CDK app: ``cdk synth`` / ``cdk deploy`` run this (cdk.json). Parameters are CDK context
(cdk.json's "context", or ``-c key=value``); deploy/aws/README.md lists them."""

from __future__ import annotations

import sys

import aws_cdk as cdk
from recserve_stack import ConfigError, RecserveStack, StackConfig


def main() -> None:
    app = cdk.App()
    try:
        config = StackConfig.from_context(app.node.try_get_context)
    except ConfigError as error:
        sys.exit(f"error: {error}")
    # Environment-agnostic: synthesis looks nothing up; `cdk deploy` uses the account and
    # region of the credentials it runs with.
    RecserveStack(app, config.name, config=config, description="recserve: feed service on AWS")
    app.synth()


if __name__ == "__main__":
    main()

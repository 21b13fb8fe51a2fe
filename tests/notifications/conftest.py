"""The broker-outage tests' private Redis, for the e-mail tests that stop the broker too."""

from tests.catalogue.test_broker_outage import own_redis  # noqa: F401

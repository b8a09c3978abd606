"""Bundled demonstration workloads, run in real runc containers under the sensor."""

"""Attested workload identity: X.509-SVIDs that agents report over the SDK, verified and recorded.

* :mod:`runwatch.svid.bundles`: the trust bundle (a PEM file, or fetched from the SPIFFE Workload API).
* :mod:`runwatch.svid.verify`: one SVID checked (chain to the bundle, SPIFFE ID URI SAN, validity
  period, proof of the private key bound to the sending process).
* :mod:`runwatch.svid.attest`: the enrichment step that verifies each reported SVID on the sender's
  container and records it (``Container.spiffe_source = "attested"``).

This module only names the event attributes, so the SDK collector can import it cheaply.
"""

from __future__ import annotations

SVID_NOTICE = "identity.svid"
"""``attrs.notice`` of the ``sensor.notice`` event an SDK ``svid`` message becomes."""

SVID_CLAIM_ATTR = "svid_spiffe_id"
"""The SPIFFE ID the reported SVID names (kept on the event, whatever the verdict)."""

SVID_CHAIN_ATTR = "svid_chain"
"""The base64 DER chain (removed once verified: the event keeps ``svid_sha256``)."""

SVID_SIG_ATTR = "svid_sig"
"""The base64 proof signature (removed once verified)."""

SVID_MONO_ATTR = "svid_mono"
"""The message's own monotonic time, which the proof signs (removed once verified)."""

SVID_STATUS_ATTR = "svid"
"""The verdict: ``attested`` | ``rejected`` | ``unverified`` (no trust bundle to check against) |
``unbound`` (valid, but the sender is in no container to record it on)."""

SVID_REASON_ATTR = "svid_reason"
"""Why an SVID was rejected or left unverified: one line, starting with a reason code."""

SVID_MISMATCH_ATTR = "svid_mismatch"
"""True when the attested SPIFFE ID differs from the one derived from Kubernetes facts."""

DERIVED_ATTR = "derived_spiffe_id"
"""The derived SPIFFE ID an attested one differs from (with :data:`SVID_MISMATCH_ATTR`)."""

"""Interoperability with clinical record systems: HL7 v2 (IHE PCD-01 over MLLP) and FHIR R4.

Uses ``vitals`` only (never ingest, dashboard or simulator); docs/interoperability.md describes the profiles.
"""

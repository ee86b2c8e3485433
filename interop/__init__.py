"""Interoperability with record systems: sessions out as FHIR R4 (and HL7 v2), device readings in.

Uses ``vitals`` only; never ``ingest``, ``dashboard`` or ``simulator`` (tests/test_imports.py).
"""

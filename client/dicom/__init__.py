"""sealdrop as a DICOM node: what a transfer's DICOM holds (summary), what
leaves the practice without identity (deidentify), the listener a scanner
sends to (listen), and forwarding verified studies into a PACS (forward).

Everything here runs on the client, before encryption or after verification:
the relay never sees a DICOM byte. See docs/dicom.md.
"""

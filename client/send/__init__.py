"""Sending: scan the files once, plan the transfer, seal it, upload it, resumably.

    scan (walk, stat, media type, DICOM header) -> recipients (fresh keys vs pins)
      -> plan (exact size) -> seal (age + signed tar) -> upload (checksummed chunks)

``flow.send`` runs the whole job and resumes an interrupted one; ``status``
reports what happened to what was sent.
"""

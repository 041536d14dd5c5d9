"""``sealdrop audit``: the verified history of a practice's keys, contacts and
transfers, for the practice or its DPO (docs/transparency.md, "The audit report")."""

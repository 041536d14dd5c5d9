"""``sealdrop desk``: the local web app for clinic and lab staff (issue 16)."""

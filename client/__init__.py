"""The sealdrop client: identities, contacts, send, receive.

    cli/       the ``sealdrop`` command: one module per command group
    send/      scan, plan, seal and upload a transfer, resumably
    receive/   download, verify and place transfers; inbox; watch
    profile/   the profile folder: its layout and local stores, sessions
    relay_api, errors, progress, secrets, outfile, fileregion: shared by the above
"""

"""Every ``sealdrop`` command: the module that defines it and its one-line summary.

The top-level group reads this table to list commands and to load one, so
``sealdrop --help`` prints the summaries without importing a single command
module (and with it rich, the relay client, pydicom...). Each summary is the
first line of its command's docstring; tests/client/test_cli_registry.py
checks that they stay equal.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CommandSpec:
    module: str  # a module of sealdrop.client.cli
    attr: str  # the click command in it
    summary: str


# In the order `sealdrop --help` lists them.
COMMANDS: dict[str, CommandSpec] = {
    "init": CommandSpec(
        "account", "init_cmd",
        "Create your keys, register them on the relay, and pin the relay."),
    "whoami": CommandSpec(
        "account", "whoami_cmd",
        "Your handle, relay and safety number (no passphrase needed)."),
    "desk": CommandSpec(
        "desk", "desk_cmd",
        "Open the desk: send, inbox, contacts and status in your browser, on this computer."),
    "contacts": CommandSpec(
        "contacts", "contacts",
        "People you send to and receive from, with their pinned keys."),
    "send": CommandSpec(
        "send", "send_cmd",
        "Encrypt files and folders for one or more contacts and upload them."),
    "inbox": CommandSpec(
        "receive", "inbox_cmd",
        "What is waiting for you on the relay (sender as the relay claims it)."),
    "receive": CommandSpec(
        "receive", "receive_cmd",
        "Download, verify and place transfers into --into (all or nothing each)."),
    "watch": CommandSpec(
        "receive", "watch_cmd",
        "Keep receiving into --into as transfers arrive (one JSON line each with --json)."),
    "forward": CommandSpec(
        "forward", "forward_cmd",
        "Send received DICOM into a PACS again: pending forwards, or IDS to a new target."),
    "dismiss": CommandSpec(
        "receive", "dismiss_cmd",
        "Refuse or dismiss transfers: they leave your inbox on the relay for good."),
    "block": CommandSpec(
        "receive", "block_cmd",
        "Refuse an account's transfers on the relay (no HANDLE: list whom you block)."),
    "unblock": CommandSpec(
        "receive", "unblock_cmd",
        "Accept an account's transfers again (its unexpired ones reappear)."),
    "status": CommandSpec(
        "send", "status_cmd",
        "Your sent transfers: uploaded, downloaded and verified, per recipient."),
    "audit": CommandSpec(
        "audit", "audit_cmd",
        "Verify your keys, contacts, transfers and receipts against the relay's log."),
    "retract": CommandSpec(
        "send", "retract_cmd",
        "Take a sent transfer back: the relay deletes it before recipients download it."),
    "dicom-listen": CommandSpec(
        "dicom", "dicom_listen_cmd",
        "Receive studies from a scanner (DICOM C-STORE) and send each as one transfer."),
    "config": CommandSpec(
        "config", "config_group",
        "Profile settings: the relay's certificate authority and the witnesses required."),
    "identity": CommandSpec(
        "identity", "identity",
        "Your keys: a signing key and the age keys it vouches for."),
    "witness": CommandSpec(
        "witness", "witness_group",
        "Cosign a relay's log checkpoints as an independent witness (C2SP tlog-witness)."),
    "age": CommandSpec(
        "age", "age_command",
        "Encrypt or decrypt [IN] (default stdin) in the age v1 format, like the age CLI."),
}

"""``sealdrop age``: an age-compatible encrypt/decrypt/keygen command.

This is also the recovery tool: with an identity exported from sealdrop, any
stored transfer opens with ``sealdrop age -d`` (or the stock ``age``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import click

from sealdrop.crypto import age
from sealdrop.crypto.age.format import Stanza
from sealdrop.crypto.age.hybrid import HybridIdentity
from sealdrop.crypto.age.x25519 import X25519Identity

from ..errors import ClientError
from ..fileregion import FileRegion
from ..outfile import atomic_output
from ..secrets import read_passphrase
from .options import examples


class _PassphraseIdentity:
    """Asks for the passphrase only if the file really is passphrase-encrypted."""

    def unwrap(self, stanzas: Sequence[Stanza]) -> bytes | None:
        if not any(s.type == "scrypt" for s in stanzas):
            return None
        return age.ScryptIdentity(read_passphrase(confirm=False)).unwrap(stanzas)


def _read_text(path: str) -> str:
    try:
        if path == "-":
            return sys.stdin.read()
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ClientError(f"cannot read {path}: {exc}") from exc


def _open_input(path: str | None) -> BinaryIO:
    if path is None or path == "-":
        return sys.stdin.buffer
    try:
        return open(path, "rb")  # noqa: SIM115 - closed by the caller
    except OSError as exc:
        raise ClientError(f"cannot open input {path}: {exc.strerror}") from exc


def _run(
    *,
    decrypt: bool,
    recipients: tuple[str, ...],
    recipient_files: tuple[str, ...],
    identity_files: tuple[str, ...],
    armor: bool,
    passphrase: bool,
    output: str | None,
    input_path: str | None,
) -> None:
    src = _open_input(input_path)
    try:
        if decrypt:
            if recipients or recipient_files or armor or passphrase:
                raise ClientError("-r, -R, -a and -p are for encryption, not with -d")
            identities: list[age.Identity] = []
            for f in identity_files:
                identities += age.parse_identities(_read_text(f))
            if not identities:
                identities.append(_PassphraseIdentity())

            def job(dst: BinaryIO) -> None:
                age.decrypt(src, dst, identities)

        else:
            if identity_files:
                raise ClientError("use -r or -R to encrypt; -i is for decryption (-d)")
            rcpts: list[age.Recipient] = [age.parse_recipient(r) for r in recipients]
            for f in recipient_files:
                rcpts += age.parse_recipients_file(_read_text(f))
            if passphrase:
                if rcpts:
                    raise ClientError("-p can't be combined with -r or -R")
                rcpts.append(age.ScryptRecipient(read_passphrase(confirm=True)))
            if not rcpts:
                raise ClientError("no recipients: give -r, -R or -p")
            if output is None and not armor and sys.stdout.isatty():
                raise ClientError(
                    "refusing to write binary ciphertext to the terminal",
                    hint="use -o FILE, or -a for armored text output",
                )

            def job(dst: BinaryIO) -> None:
                region = FileRegion.of(src)
                with age.Encryptor(dst, rcpts, armor=armor) as enc:
                    if region is not None:
                        enc.write_positional(region, region.size)
                    else:
                        enc.write_from(src)

        if output is None or output == "-":
            job(sys.stdout.buffer)
            sys.stdout.buffer.flush()
        else:
            try:
                with atomic_output(Path(output)) as dst:
                    job(dst)
            except OSError as exc:
                raise ClientError(f"cannot write {output}: {exc.strerror or exc}") from exc
    finally:
        if src is not sys.stdin.buffer:
            src.close()


def _keygen(pq: bool, output: str | None, convert: str | None) -> None:
    if convert is not None:
        for parsed in age.parse_identities(_read_text(convert)):
            recipient = parsed.recipient()  # type: ignore[attr-defined]
            click.echo(str(recipient))
        return
    ident: X25519Identity | HybridIdentity = (
        HybridIdentity.generate(os.urandom) if pq else X25519Identity.generate(os.urandom)
    )
    public = str(ident.recipient())
    created = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    text = f"# created: {created}\n# public key: {public}\n{ident.encode()}\n"
    if output is None or output == "-":
        if not sys.stdout.isatty():
            click.echo(f"Public key: {public}", err=True)
        sys.stdout.write(text)
        return
    path = Path(output)
    try:
        with atomic_output(path, mode=0o600, overwrite=False) as f:
            f.write(text.encode("ascii"))
    except FileExistsError as exc:
        raise ClientError(f"{output} already exists; refusing to overwrite a key file") from exc
    except OSError as exc:
        raise ClientError(f"cannot write {output}: {exc.strerror or exc}") from exc
    click.echo(f"Public key: {public}", err=True)


@click.command("keygen", epilog=examples(
    "sealdrop age keygen -o key.txt",
    "sealdrop age keygen --pq -o key.txt",
    "sealdrop age keygen -y key.txt",
))
@click.option("--pq", is_flag=True,
              help="Generate a post-quantum hybrid (ML-KEM-768 + X25519) key.")
@click.option("-o", "--output", metavar="FILE", help="Write the key to FILE (mode 0600).")
@click.option("-y", "convert", metavar="FILE",
              help="Print the recipients of the identities in FILE.")
def keygen(pq: bool, output: str | None, convert: str | None) -> None:
    """Generate an age identity, like age-keygen."""
    _keygen(pq, output, convert)


@click.command(
    "age",
    epilog=examples(
        "sealdrop age -r age1… -o scan.stl.age scan.stl",
        "sealdrop age -d -i key.txt -o scan.stl scan.stl.age",
        "sealdrop age -p -a notes.txt > notes.txt.age",
        "    (the passphrase comes from SEALDROP_PASSPHRASE, else the terminal)",
        "sealdrop age keygen --pq -o key.txt",
        "sealdrop age keygen -y key.txt",
    ),
    context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True},
)
@click.option("-e", "--encrypt", "encrypt_flag", is_flag=True, help="Encrypt (the default).")
@click.option("-d", "--decrypt", "decrypt_flag", is_flag=True, help="Decrypt.")
@click.option("-r", "--recipient", "recipients", multiple=True, metavar="RECIPIENT",
              help="Encrypt to RECIPIENT (age1… or age1pq1…). Repeatable.")
@click.option("-R", "--recipients-file", "recipient_files", multiple=True, metavar="FILE",
              help="Encrypt to the recipients listed in FILE. Repeatable.")
@click.option("-i", "--identity", "identity_files", multiple=True, metavar="FILE",
              help="Decrypt with the identities in FILE. Repeatable.")
@click.option("-a", "--armor", is_flag=True, help="Encrypt to a PEM-armored text file.")
@click.option("-p", "--passphrase", is_flag=True,
              help="Encrypt with a passphrase (SEALDROP_PASSPHRASE, else asked on the "
              "terminal).")
@click.option("-o", "--output", metavar="OUT",
              help="Write to OUT (only if the whole job succeeds).")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def age_command(
    encrypt_flag: bool,
    decrypt_flag: bool,
    recipients: tuple[str, ...],
    recipient_files: tuple[str, ...],
    identity_files: tuple[str, ...],
    armor: bool,
    passphrase: bool,
    output: str | None,
    args: tuple[str, ...],
) -> None:
    """Encrypt or decrypt [IN] (default stdin) in the age v1 format, like the age CLI.

    `sealdrop age keygen` generates keys, like age-keygen.
    """
    if args and args[0] == "keygen":
        keygen.main(list(args[1:]), prog_name="sealdrop age keygen", standalone_mode=False)
        return
    if len(args) > 1 or (args and args[0].startswith("-") and args[0] != "-"):
        raise click.UsageError("too many arguments, or an option after the input file")
    if encrypt_flag and decrypt_flag:
        raise click.UsageError("-e and -d are mutually exclusive")
    _run(
        decrypt=decrypt_flag,
        recipients=recipients,
        recipient_files=recipient_files,
        identity_files=identity_files,
        armor=armor,
        passphrase=passphrase,
        output=output,
        input_path=args[0] if args else None,
    )



"""``lockmirror keygen KEY``: an Ed25519 key pair for signing bundles."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..formats.signing import PASSPHRASE_ENV, fingerprint, generate_keypair, load_public_key

NAME = "keygen"
HELP = ("write an Ed25519 key pair for `bundle --key` / `import --pubkey` (OpenSSH format, "
        f"encrypted when ${PASSPHRASE_ENV} is set)")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("key", type=Path, metavar="KEY",
                        help="private key path; the public key goes to KEY.pub")
    parser.add_argument("--comment", default="lockmirror", help="comment on the public key")


def run(args: argparse.Namespace) -> int:
    public = generate_keypair(args.key, comment=args.comment)
    print(f"keygen: private key {args.key} (keep it on the build side), public key {public} "
          "(carry it to the far side apart from the bundles; beside a bundle there it is "
          f"signer.pub), fingerprint {fingerprint(load_public_key(public))}")
    return 0

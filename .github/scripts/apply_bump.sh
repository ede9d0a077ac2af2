#!/usr/bin/env bash
# Apply bump.yml's hand-over to this checkout, refusing anything `lockmirror bump` does
# not write. Usage: apply_bump.sh HANDOVER_DIR BRANCH
#
# The hand-over (bump.patch: the bump job's one commit, from `git format-patch`;
# title.txt and body.md: the pull request's words) and BRANCH come from the bump job,
# which ran sdists' PEP 517 build backends: a backend can rewrite them (or upload an
# artifact of the same name with the runner's ACTIONS_RUNTIME_TOKEN), so the push job
# trusts none of it. Accepted: BRANCH lockmirror/bump or lockmirror/bump-security,
# a one-line title, and one commit on this checkout's HEAD whose changes are all
# regular files lockfiles/pylock.*.toml (added, changed or deleted): never
# .github/, src/, mirror.yaml, a symbolic link or an executable. Runs git only.
set -euo pipefail

fail() {
    echo "apply_bump: $*" >&2
    exit 1
}

[ "$#" -eq 2 ] || fail "usage: apply_bump.sh HANDOVER_DIR BRANCH"
handover="$1"
branch="$2"
[[ "$branch" =~ ^lockmirror/bump(-security)?$ ]] \
    || fail "branch '$branch' is not one lockmirror bump makes (lockmirror/bump, lockmirror/bump-security)"
for name in bump.patch title.txt body.md; do
    if [ ! -f "$handover/$name" ] || [ -L "$handover/$name" ]; then
        fail "$handover/$name: missing (or not a regular file)"
    fi
done
title="$(cat "$handover/title.txt")"
if [ -z "$title" ] || [[ "$title" == *$'\n'* ]]; then
    fail "$handover/title.txt: not one line"
fi

base="$(git rev-parse HEAD)"
if ! git am --quiet --no-3way "$handover/bump.patch"; then
    git am --abort || true
    fail "$handover/bump.patch does not apply on $base"
fi
commits="$(git rev-list --count "$base..HEAD")"
[ "$commits" = 1 ] || fail "$handover/bump.patch makes $commits commits, not one"

changed=0
while IFS= read -r -d '' meta && IFS= read -r -d '' path; do
    read -r _ new_mode _ <<<"${meta#:}"
    if [[ ! "$path" =~ ^lockfiles/pylock\.[^/]+\.toml$ ]]; then
        fail "$handover/bump.patch changes $path: bump changes lockfiles/pylock.*.toml only"
    fi
    if [ "$new_mode" != 100644 ] && [ "$new_mode" != 000000 ]; then
        fail "$handover/bump.patch makes $path mode $new_mode: lockfiles are regular files"
    fi
    changed=$((changed + 1))
done < <(git diff --raw -z --no-renames --no-textconv --no-ext-diff "$base" HEAD)
[ "$changed" -gt 0 ] || fail "$handover/bump.patch changes nothing"
echo "applied $(git rev-parse --short HEAD) on $base: $changed lockfiles for $branch"

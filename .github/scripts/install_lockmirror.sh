#!/usr/bin/env bash
# Install lockmirror for a workflow job, from the checkout's top (after setup-python):
#     bash .github/scripts/install_lockmirror.sh
# Nothing is resolved from a package index and nothing is built but lockmirror itself.
#
# Its dependencies: the wheels the committed, reviewed lockfiles/pylock.lockmirror-tool.toml
# names, each by sha256 (tool_requirements.py writes them as hashed requirements).
# lockmirror itself:
# - in lockmirror's own repository (pyproject.toml's [project] name is lockmirror): this
#   checkout, with the build backend of build-backend.txt (pinned by hash), no dependencies
#   and no build isolation;
# - in any other repository (a mirror repository: README, "Your own mirror repository"):
#   the one requirement .github/lockmirror.txt states, either a wheel pinned by sha256,
#       lockmirror==0.1.0 --hash=sha256:<64 hex>   (from the index pip uses)
#       lockmirror @ https://host/lockmirror-0.1.0-py3-none-any.whl --hash=sha256:<64 hex>
#   installed as the dependencies are, or a commit of lockmirror's git repository,
#       lockmirror @ git+https://github.com/OWNER/lockmirror@<40 hex commit>
#   built as lockmirror's own repository builds its checkout. Anything else (a range, a
#   branch or tag, a wheel without its hash, another project) is refused before any install.
set -euo pipefail

fail() {
    echo "install_lockmirror: $*" >&2
    exit 1
}

scripts=.github/scripts
tool_lockfile=lockfiles/pylock.lockmirror-tool.toml
pinned=.github/lockmirror.txt
wheel_form='^lockmirror(==[^[:space:]]+| @ [^[:space:]]+\.whl)( --hash=sha256:[0-9a-f]{64})+$'
commit_form='^lockmirror @ git\+(https|ssh|file)://[^[:space:]]+@[0-9a-f]{40}$'

project="$(python - <<'EOF'
import tomllib

try:
    with open("pyproject.toml", "rb") as stream:
        print(tomllib.load(stream).get("project", {}).get("name", ""))
except (OSError, tomllib.TOMLDecodeError):
    print("")
EOF
)"

install_from=checkout
if [ "$project" != lockmirror ]; then
    [ -f "$pinned" ] || fail "$pinned: missing: outside lockmirror's own repository it names" \
        "the lockmirror to install (lockmirror==VERSION --hash=sha256:..., or" \
        "lockmirror @ git+https://...@COMMIT; README, \"Your own mirror repository\")"
    requirements=()
    while IFS= read -r line || [ -n "$line" ]; do
        read -r -a words <<< "${line%%#*}"  # without a comment; blanks collapse
        if [ "${#words[@]}" -gt 0 ]; then requirements+=("${words[*]}"); fi
    done < "$pinned"
    [ "${#requirements[@]}" -eq 1 ] \
        || fail "$pinned: ${#requirements[@]} requirements: state exactly one, lockmirror's"
    requirement="${requirements[0]}"
    if [[ "$requirement" =~ $wheel_form ]]; then
        install_from=wheel
    elif [[ "$requirement" =~ $commit_form ]]; then
        install_from=commit
    else
        shown="$(sed -E 's#//[^/@]*@#//***@#g' <<< "$requirement")"  # no user:token@ in a log
        fail "$pinned: '$shown' pins no lockmirror wheel by sha256 and no git commit" \
            "(lockmirror==VERSION --hash=sha256:..., lockmirror @ URL.whl --hash=sha256:...," \
            "or lockmirror @ git+https://...@<40 hex commit>)"
    fi
fi
[ -f "$tool_lockfile" ] || fail "$tool_lockfile: missing: lock lockmirror's own set with the" \
    "others and commit its lockfile (README, \"lockmirror's own set\")"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
{
    python "$scripts/tool_requirements.py" "$tool_lockfile"
    if [ "$install_from" = wheel ]; then
        printf '%s\n' "$requirement"  # the one line checked above, not the file
    else
        cat "$scripts/build-backend.txt"  # what builds lockmirror below
    fi
} > "$work/requirements.txt"
python -m pip install --require-hashes --only-binary :all: --no-deps -r "$work/requirements.txt"
if [ "$install_from" = checkout ]; then
    python -m pip install --no-deps --no-build-isolation -e .
elif [ "$install_from" = commit ]; then
    python -m pip install --no-deps --no-build-isolation "$requirement"
fi

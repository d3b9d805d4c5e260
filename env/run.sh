#!/usr/bin/env bash
# Run a command inside the environment that env/setup.sh prepared:
#   env/run.sh watchnext run
#   env/run.sh pytest -q tests
# In chroot mode the repository's parent directory is bind-mounted at the same
# path inside the Debian 13 root file system (so ../shared resolves), /proc,
# /dev and /sys are mounted, and all mounts vanish when the command exits.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
state="$repo/.build/env"
[ -f "$state" ] || { echo "[run] error: no environment yet; run env/setup.sh first" >&2; exit 1; }
[ $# -gt 0 ] || set -- bash
# TensorFlow's C++ INFO lines drown the pipeline's own logs; override to see them.
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
mode=$(sed -n 1p "$state")
root=$(sed -n 2p "$state")

case "$mode" in
  venv)
    export PATH="$root/bin:$PATH" VIRTUAL_ENV="$root"
    exec "$@"
    ;;
  chroot)
    [ -x "$root/opt/venv/bin/python" ] ||
      { echo "[run] error: root file system $root is missing or incomplete; run env/setup.sh" >&2; exit 1; }
    [ "$(id -u)" = 0 ] || { echo "[run] error: chroot mode needs root" >&2; exit 1; }
    # Only these variables cross into the root file system; the host's PIP_*
    # and PATH point at host-only paths.
    passed=(PATH=/opt/venv/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
            VIRTUAL_ENV=/opt/venv PYTHONDONTWRITEBYTECODE=1)
    while IFS='=' read -r name _; do
      case "$name" in
        WATCHNEXT_*|TF_*|KERAS_*|CI|TERM|COLUMNS|PYTHONUNBUFFERED|PYTEST_*) passed+=("$name=${!name}") ;;
      esac
    done < <(env)
    share=$(dirname "$repo")
    [ "$share" != / ] || share=$repo
    cwd=$PWD
    case "$cwd/" in "$share"/*) ;; *) cwd=$repo ;; esac
    exec env -i "${passed[@]}" unshare --mount --propagation private sh -c '
      root=$1 share=$2 cwd=$3; shift 3
      mount -t proc proc "$root/proc" &&
      mount --rbind /dev "$root/dev" &&
      mount --rbind /sys "$root/sys" &&
      mkdir -p "$root$share" &&
      mount --rbind "$share" "$root$share" || exit 125
      exec chroot "$root" sh -c "cd \"\$0\" && exec \"\$@\"" "$cwd" "$@"
    ' sh "$root" "$share" "$cwd" "$@"
    ;;
  *)
    echo "[run] error: unknown environment mode '$mode' in $state; run env/setup.sh" >&2
    exit 1
    ;;
esac

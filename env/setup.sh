#!/usr/bin/env bash
# Set up the environment every watchnext command runs in (the README's set-up command).
#
# Two modes, chosen from the host:
#   venv    host has glibc >= 2.39 and Python 3.10-3.13 (Ubuntu 24.04, Debian 13,
#           the TFX images): a plain .venv in the repository.
#   chroot  anything older (Debian 12 has glibc 2.36, too old for the ml-metadata
#           and TFDV 1.21 wheels): a Debian 13 root file system made with
#           debootstrap, cached outside the clone under $WATCHNEXT_CACHE_DIR
#           (default /var/cache/watchnext) and keyed by a hash of the pinned
#           requirements, so a changed pin rebuilds it and nothing else does.
# WATCHNEXT_ENV=venv|chroot overrides the choice.
# Afterwards env/run.sh runs any command inside the environment.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
state_dir="$repo/.build"
cache_dir=${WATCHNEXT_CACHE_DIR:-/var/cache/watchnext}
suite=trixie
min_free_gib=8

log() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

requirements_key() {
  # Everything that decides the installed packages, plus this recipe's version.
  cat "$repo/env/requirements.txt" "$repo/env/requirements-test.txt" \
      "$repo/env/constraints.txt" <(echo "recipe=3 suite=$suite") |
    sha256sum | cut -c1-16
}

host_supports_venv() {
  local glibc py
  glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}') || return 1
  py=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || return 1
  [ -n "$glibc" ] || return 1
  python3 - "$glibc" "$py" <<'EOF'
import sys
glibc = tuple(int(p) for p in sys.argv[1].split(".")[:2])
py = tuple(int(p) for p in sys.argv[2].split("."))
sys.exit(0 if glibc >= (2, 39) and (3, 10) <= py <= (3, 13) else 1)
EOF
}

pip_install_project() {  # $1: the python of the environment
  "$1" -m pip install --quiet --disable-pip-version-check --no-cache-dir \
    -c "$repo/env/constraints.txt" \
    -r "$repo/env/requirements.txt" -r "$repo/env/requirements-test.txt"
}

editable_install() {  # into whichever environment .build/env names
  "$repo/env/run.sh" python -m pip install --quiet --disable-pip-version-check \
    --no-cache-dir --no-deps --no-build-isolation -e "$repo" ||
    die "installing watchnext (editable) into the environment failed"
}

apt_install() {  # installs Debian/Ubuntu packages when we may, else says what is missing
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing $* with apt-get"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"; } >&2 ||
      die "apt-get could not install $*"
  else
    die "missing system packages: $* (install them, e.g. with apt-get as root)"
  fi
}

ensure_venv_prerequisites() {
  local missing=() py
  py=$(python3 -c 'import sys; print("python%d.%d" % sys.version_info[:2])')
  python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv "$py-venv")
  python3 -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' ||
    missing+=(python3-dev)
  command -v g++ >/dev/null || missing+=(g++)
  [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
}

setup_venv() {
  local key=$1 venv="$repo/.venv"
  if [ "$(cat "$venv/.watchnext-key" 2>/dev/null)" != "$key" ]; then
    ensure_venv_prerequisites
    log "creating $venv (pinned requirements $key; about 2 minutes)"
    rm -rf "$venv"
    python3 -m venv "$venv" || die "python3 -m venv $venv failed"
    pip_install_project "$venv/bin/python" || die "pip install into $venv failed"
    echo "$key" > "$venv/.watchnext-key"
  else
    log "reusing $venv (pinned requirements $key)"
  fi
  printf 'venv\n%s\n' "$venv" > "$state_dir/env"
  editable_install
}

check_chroot_prerequisites() {
  [ "$(id -u)" = 0 ] || die "this host (glibc $(getconf GNU_LIBC_VERSION | awk '{print $2}')) needs the Debian 13 root file system, which needs root (debootstrap, unshare, chroot). Run as root, or use a host with glibc >= 2.39 for a plain venv."
  command -v unshare >/dev/null || die "unshare is missing (package util-linux)"
  command -v chroot >/dev/null || die "chroot is missing (package coreutils)"
  command -v debootstrap >/dev/null || apt_install debootstrap
  mkdir -p "$cache_dir" || die "cannot create the cache directory $cache_dir (set WATCHNEXT_CACHE_DIR)"
}

check_free_space() {
  local free_kib
  free_kib=$(df -Pk "$cache_dir" | awk 'NR==2 {print $4}')
  if [ "$free_kib" -lt $((min_free_gib * 1024 * 1024)) ]; then
    die "the disk holding $cache_dir has $((free_kib / 1024)) MiB free; building the root file system needs ${min_free_gib} GiB (set WATCHNEXT_CACHE_DIR to a larger disk)"
  fi
}

build_rootfs() {  # $1: final path
  local final=$1 tmp="$1.partial.$$"
  check_free_space
  trap 'rm -rf "$tmp"' EXIT
  log "building the Debian 13 root file system in $tmp (about 3 minutes, once per pin set)"
  debootstrap --variant=minbase \
    --include=python3,python3-venv,python3-pip,python3-dev,g++,ca-certificates \
    "$suite" "$tmp" > "$tmp.log" 2>&1 ||
    { tail -n 20 "$tmp.log" >&2; df -h "$cache_dir" >&2; die "debootstrap failed (full log: $tmp.log)"; }
  rm -f "$tmp.log"
  # pip inside needs the host's CA bundle and name resolution (see docs).
  cp /etc/ssl/certs/ca-certificates.crt "$tmp/etc/ssl/certs/ca-certificates.crt"
  cp -L /etc/resolv.conf "$tmp/etc/resolv.conf" 2>/dev/null || true
  cp "$repo/env/requirements.txt" "$repo/env/requirements-test.txt" \
     "$repo/env/constraints.txt" "$tmp/tmp/"
  log "installing the pinned Python packages inside it"
  env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    unshare --mount --propagation private sh -c '
      mount -t proc proc "$1/proc" && mount --rbind /dev "$1/dev" && mount --rbind /sys "$1/sys" &&
      chroot "$1" sh -c "python3 -m venv /opt/venv && /opt/venv/bin/pip install --quiet --disable-pip-version-check --no-cache-dir -c /tmp/constraints.txt -r /tmp/requirements.txt -r /tmp/requirements-test.txt"
    ' sh "$tmp" || { df -h "$cache_dir" >&2; die "pip install inside the root file system failed"; }
  rm -f "$tmp"/tmp/*.txt
  mv "$tmp" "$final"
  trap - EXIT
}

setup_chroot() {
  local key=$1 rootfs
  check_chroot_prerequisites
  rootfs="$cache_dir/rootfs-$key"
  if [ -x "$rootfs/opt/venv/bin/python" ]; then
    log "reusing the root file system $rootfs"
  else
    build_rootfs "$rootfs"
  fi
  printf 'chroot\n%s\n' "$rootfs" > "$state_dir/env"
  editable_install
}

main() {
  local key mode=${WATCHNEXT_ENV:-}
  mkdir -p "$state_dir"
  key=$(requirements_key)
  if [ -z "$mode" ]; then
    if host_supports_venv; then mode=venv; else mode=chroot; fi
  fi
  log "environment mode: $mode"
  case "$mode" in
    venv) setup_venv "$key" ;;
    chroot) setup_chroot "$key" ;;
    *) die "WATCHNEXT_ENV must be venv or chroot, not '$mode'" ;;
  esac
  log "ready: env/test.sh runs the tests; env/run.sh COMMAND runs anything inside (e.g. env/run.sh watchnext --help)"
}

main "$@"

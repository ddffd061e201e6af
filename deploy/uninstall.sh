#!/bin/sh
# Removes the Outpost agent: the service, /opt/outpost and the CLI wrapper.
# Keeps /var/lib/outpost (outbox, installed models, trust metadata, the device credential in
# sync/credential.json) and /etc/outpost (config, pinned root) so a reinstall carries on where
# it stopped, enrolled as before, unless --purge, which also removes both (the credential with
# them: the device must then be enrolled again with a new token) and the outpost user.
#
#   uninstall.sh [--purge] [--root DIR]
set -eu

PROG=uninstall.sh
die() { echo "$PROG: $*" >&2; exit 1; }
say() { echo "$PROG: $*"; }

purge=0 root=/
while [ $# -gt 0 ]; do
  case "$1" in
    --purge) purge=1; shift ;;
    --root) root=$2; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
root=$(cd "$root" 2>/dev/null && pwd) || die "--root directory does not exist"
[ "$root" = / ] && R='' || R=$root
if [ "$root" = / ] && [ "$(id -u)" != 0 ]; then die "run as root (sudo $0 …)"; fi

unit="$R/etc/systemd/system/outpost-agent.service"
if [ -z "$R" ] && [ -d /run/systemd/system ]; then
  systemctl disable --now outpost-agent.service 2>/dev/null || true
fi
rm -f "$unit"
rm -rf "$R/etc/systemd/system/outpost-agent.service.d"
if [ -z "$R" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
rm -rf "$R/opt/outpost"
rm -f "$R/usr/local/bin/outpost-agent"
say "removed the service, /opt/outpost and /usr/local/bin/outpost-agent"

if [ "$purge" = 1 ]; then
  rm -rf "$R/var/lib/outpost" "$R/etc/outpost"
  if awk -F: '$1=="outpost" {found=1} END {exit !found}' "$R/etc/passwd" 2>/dev/null; then
    if [ -z "$R" ]; then userdel outpost; else userdel --root "$root" outpost; fi
  fi
  say "purged /var/lib/outpost, /etc/outpost and the outpost user"
else
  say "kept /var/lib/outpost and /etc/outpost (remove them with --purge)"
fi

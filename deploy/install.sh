#!/bin/sh
# Installs (or upgrades) the Outpost agent on a Debian or Ubuntu device, arm64 or x86-64.
#
#   install.sh --package outpost-agent-<v>-linux-<arch>.tar.gz --root-json root.json \
#              --control-plane https://outpost.example.com --token oet_… [options]
#
# Options:
#   --package FILE         the release tarball (npm run package); or --from DIR, an unpacked one
#   --root-json FILE       the pinned TUF root, copied to /etc/outpost/root.json (0644)
#   --replace-root         allow replacing a different pinned root (a trust reset)
#   --control-plane URL    the control plane to enrol with (POST URL/v1/enrol); the config
#                          gets sync.url and controlPlane.url = URL and signed updates on
#   --token TOKEN          the enrolment token (or --token-file FILE, or OUTPOST_ENROL_TOKEN)
#   --device-id ID         default: the hostname
#   --no-enrol             do not enrol now (no control plane reachable yet): with --token the
#                          token goes into the config as sync.enrolmentToken and the agent
#                          enrols on its first start; without one sync stays off until this
#                          runs again with --token
#   --node PATH            the node binary for the unit (default: `command -v node`)
#   --no-start             install and enable, but do not (re)start the service
#   --root DIR             install into DIR instead of / (packaging, tests); implies no
#                          systemctl, and user creation runs `useradd --root DIR`
#
# Enrolment writes the device credential where the agent's sync client reads it:
# /var/lib/outpost/sync/credential.json ({deviceId, credential, url}; 0600 outpost, in a 0700
# directory). An existing credential means "already enrolled": no token is needed or spent.
#
# Idempotent: running it again keeps config, credential, data and the pinned root, installs
# the package as a new release under /opt/outpost/releases, flips /opt/outpost/current and
# keeps the previous release for a rollback. An existing agent.json is only added to: the
# sync and updates sections, when it has no sync section and the device is enrolled (or
# --no-enrol came with a token).
set -eu

PROG=install.sh
die() { echo "$PROG: $*" >&2; exit 1; }
say() { echo "$PROG: $*"; }

package='' from='' root_json='' replace_root=0 cp_url='' token="${OUTPOST_ENROL_TOKEN:-}"
device_id='' enrol=1 node_bin='' start=1 root=/
while [ $# -gt 0 ]; do
  case "$1" in
    --package) package=$2; shift 2 ;;
    --from) from=$2; shift 2 ;;
    --root-json) root_json=$2; shift 2 ;;
    --replace-root) replace_root=1; shift ;;
    --control-plane) cp_url=${2%/}; shift 2 ;;
    --token) token=$2; shift 2 ;;
    --token-file) token=$(cat "$2") || die "cannot read $2"; shift 2 ;;
    --device-id) device_id=$2; shift 2 ;;
    --no-enrol) enrol=0; shift ;;
    --node) node_bin=$2; shift 2 ;;
    --no-start) start=0; shift ;;
    --root) root=$2; shift 2 ;;
    -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

# --- preflight: everything that can refuse, before anything is written -------------------
case "$(uname -m)" in
  x86_64|amd64) arch=x64 ;;
  aarch64|arm64) arch=arm64 ;;
  *) die "unsupported machine $(uname -m): Outpost runs on x86-64 and arm64 (onnxruntime has no 32-bit ARM build)" ;;
esac
[ "$(uname -s)" = Linux ] || die "Outpost installs on Linux only"
root=$(cd "$root" 2>/dev/null && pwd) || die "--root directory does not exist"
[ "$root" = / ] && R='' || R=$root
if [ "$root" = / ] && [ "$(id -u)" != 0 ]; then die "run as root (sudo $0 …)"; fi

[ -n "$package" ] || [ -n "$from" ] || die "give --package FILE.tar.gz or --from DIR"
[ -z "$package" ] || [ -f "$package" ] || die "package $package not found"
[ -z "$from" ] || [ -f "$from/outpost-package.json" ] || die "$from is not an unpacked Outpost package (no outpost-package.json)"

[ -n "$node_bin" ] || node_bin=$(command -v node || true)
[ -n "$node_bin" ] && [ -x "$node_bin" ] || die "node not found; install Node.js 20.17+ (e.g. apt-get install nodejs) or pass --node PATH"
"$node_bin" -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=17)?0:1)' \
  || die "$node_bin is Node $("$node_bin" -p process.versions.node); Outpost needs 20.17 or newer"

etc="$R/etc/outpost"
if [ -n "$root_json" ]; then
  [ -f "$root_json" ] || die "TUF root $root_json not found"
  "$node_bin" -e 'const r=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8")); if(!r.signed||r.signed._type!=="root") process.exit(1)' "$root_json" \
    || die "$root_json is not TUF root metadata (signed._type must be \"root\")"
  if [ -f "$etc/root.json" ] && ! cmp -s "$root_json" "$etc/root.json" && [ "$replace_root" = 0 ]; then
    die "$etc/root.json exists and differs from $root_json; pass --replace-root to reset trust"
  fi
elif [ ! -f "$etc/root.json" ]; then
  die "no pinned TUF root: pass --root-json FILE (the root.json from \`outpost keys init\`)"
fi

# The agent's own credential file (agent/sync/credentials.ts): its presence is the enrolment.
data="$R/var/lib/outpost"
cred="$data/sync/credential.json"
enrolled=0
if [ -f "$cred" ]; then
  enrolled=1
  cred_id=$("$node_bin" -p 'const c=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8")); if(typeof c.deviceId!=="string"||typeof c.credential!=="string"||typeof c.url!=="string") throw 0; c.deviceId' "$cred" 2>/dev/null) \
    || die "$cred is not a device credential ({deviceId, credential, url}); move it away to enrol again"
  [ -z "$device_id" ] || [ "$device_id" = "$cred_id" ] \
    || die "already enrolled as $cred_id ($cred); --device-id $device_id would not match it"
  device_id=$cred_id
  [ -n "$cp_url" ] || cp_url=$("$node_bin" -p 'JSON.parse(require("fs").readFileSync(process.argv[1],"utf8")).url' "$cred")
fi
# A kept config names the device already; enrolling it under another name would strand it.
if [ -z "$device_id" ] && [ -f "$etc/agent.json" ]; then
  device_id=$("$node_bin" -p 'JSON.parse(require("fs").readFileSync(process.argv[1],"utf8")).deviceId ?? ""' "$etc/agent.json" 2>/dev/null) \
    || die "$etc/agent.json is not valid JSON"
fi
[ -n "$device_id" ] || device_id=$( (hostname 2>/dev/null || cat /etc/hostname) | tr -c 'A-Za-z0-9._\n-' '-')
case "$device_id" in
  ''|*[!A-Za-z0-9._-]*) die "device id '$device_id' must be letters, digits, . _ -" ;;
esac
if [ "$enrol" = 1 ] && [ "$enrolled" = 0 ]; then
  [ -n "$cp_url" ] || die "enrolment needs --control-plane URL (or pass --no-enrol)"
  [ -n "$token" ] || die "enrolment needs --token (or --token-file, or --no-enrol)"
fi

# --- package metadata, then enrolment: a refusal or an unreachable control plane leaves
# --- nothing installed ----------------------------------------------------------------
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -n "$package" ]; then
  tar -xzOf "$package" --wildcards '*/outpost-package.json' > "$work/outpost-package.json" 2>/dev/null \
    || die "$package is not an Outpost package (no outpost-package.json)"
  meta="$work/outpost-package.json"
else
  meta="$from/outpost-package.json"
fi
pkg_arch=$("$node_bin" -p 'require(process.argv[1]).arch' "$meta")
version=$("$node_bin" -p 'require(process.argv[1]).version' "$meta")
[ "$pkg_arch" = "$arch" ] || die "the package is for $pkg_arch but this machine is $arch"

# --- enrolment ----------------------------------------------------------------------------
if [ "$enrol" = 1 ] && [ "$enrolled" = 0 ]; then
  say "enrolling $device_id with $cp_url"
  OUTPOST_ENROL_TOKEN=$token "$node_bin" -e '
    const [cp, deviceId, arch, version, out] = process.argv.slice(1);
    const url = `${cp}/v1/enrol`;
    (async () => {
      let res;
      try {
        res = await fetch(url, { method: "POST", headers: { "content-type": "application/json" },
          body: JSON.stringify({ token: process.env.OUTPOST_ENROL_TOKEN, deviceId, arch, agentVersion: version }),
          signal: AbortSignal.timeout(15000) });
      } catch (e) {
        console.error(`cannot reach ${url}: ${e.cause?.message ?? e.message}; retry later or pass --no-enrol`);
        process.exit(1);
      }
      const text = await res.text();
      if (res.status !== 201) { console.error(`enrolment refused: HTTP ${res.status} ${text.slice(0, 300)}`); process.exit(1); }
      let body;
      try { body = JSON.parse(text); } catch { body = {}; }
      if (typeof body.credential !== "string" || body.deviceId !== deviceId) {
        console.error(`enrolment answer is not {deviceId: "${deviceId}", credential}: ${text.slice(0, 300)}`);
        process.exit(1);
      }
      // The agent reads exactly this shape; url is the base its sync client talks to.
      require("fs").writeFileSync(out, JSON.stringify({ deviceId, credential: body.credential, url: cp }) + "\n",
        { mode: 0o600 });
    })();
  ' "$cp_url" "$device_id" "$arch" "$version" "$work/credential.json" || die "enrolment failed; nothing was installed"
  # Kept at once: the control plane now knows this device and the token is spent, so a
  # failure further down must not lose the only copy of its credential.
  install -d -m 0750 "$data"
  install -d -m 0700 "$data/sync"
  install -m 0600 "$work/credential.json" "$cred.new"
  mv "$cred.new" "$cred"
  enrolled=1
  say "enrolled as $device_id; credential in /var/lib/outpost/sync/credential.json"
elif [ "$enrolled" = 1 ]; then
  say "already enrolled as $device_id (/var/lib/outpost/sync/credential.json); kept"
elif [ -n "$cp_url" ] && [ -n "$token" ]; then
  say "enrolment deferred (--no-enrol): the agent enrols with sync.enrolmentToken on its first start"
else
  say "enrolment skipped (--no-enrol): sync stays off; enrol later by running this again with --control-plane URL --token TOKEN"
fi

# --- user and directories -----------------------------------------------------------------
uid_of() { awk -F: -v u="$1" '$1==u {print $3}' "$R/etc/passwd" 2>/dev/null; }
gid_of() { awk -F: -v g="$1" '$1==g {print $3}' "$R/etc/group" 2>/dev/null; }
if [ -z "$(uid_of outpost)" ]; then
  if [ -z "$R" ]; then
    useradd --system --user-group --home-dir /var/lib/outpost --no-create-home \
      --shell /usr/sbin/nologin --comment 'Outpost agent' outpost
  else
    useradd --root "$root" --system --user-group --home-dir /var/lib/outpost --no-create-home \
      --shell /usr/sbin/nologin --comment 'Outpost agent' outpost
  fi
  say "created system user outpost"
fi
uid=$(uid_of outpost) gid=$(gid_of outpost)
[ -n "$uid" ] && [ -n "$gid" ] || die "user outpost missing from $R/etc/passwd or group from $R/etc/group"
own() {
  # Numeric ids: with --root the names exist only inside the target tree.
  if [ "$(id -u)" = 0 ]; then chown "$@"; else say "not root: skipped chown $*"; fi
}

install -d -m 0755 "$R/opt/outpost/releases" "$R/etc/systemd/system" "$R/usr/local/bin"
install -d -m 0750 "$etc"
own "0:$gid" "$etc"
install -d -m 0750 "$data"
own "$uid:$gid" "$data"
if [ -f "$cred" ]; then
  # The agent (user outpost) reads and rewrites it; nobody else needs it.
  chmod 0700 "$data/sync"
  chmod 0600 "$cred"
  own "$uid:$gid" "$data/sync" "$cred"
fi

release="$R/opt/outpost/releases/$version"
rm -rf "$release.new" "$release.unpack"
if [ -n "$package" ]; then
  # Unpacked in place (same filesystem as the release), so the files are written once.
  mkdir "$release.unpack"
  tar -C "$release.unpack" -xzf "$package" || die "cannot unpack $package"
  mv "$release.unpack"/*/ "$release.new"
  rmdir "$release.unpack"
else
  cp -R "$from" "$release.new"
fi
rm -rf "$release"
mv "$release.new" "$release"
ln -sfn "releases/$version" "$R/opt/outpost/current.new"
mv -T "$R/opt/outpost/current.new" "$R/opt/outpost/current"
# Keep the running release and the one before it, for `ln -sfn releases/<old> current`.
keep=$(ls -1t "$R/opt/outpost/releases" | head -n 2)
for old in $(ls -1 "$R/opt/outpost/releases"); do
  echo "$keep" | grep -qx "$old" || rm -rf "$R/opt/outpost/releases/$old"
done
say "installed $version ($arch) in /opt/outpost/releases/$version"

# --- config, pinned root, CLI wrapper, unit -----------------------------------------------
if [ -n "$root_json" ]; then
  install -m 0644 "$root_json" "$etc/root.json.new"
  mv "$etc/root.json.new" "$etc/root.json"
  say "pinned TUF root at /etc/outpost/root.json"
fi
# Sync (and with it signed updates from the control plane) goes on when the device holds a
# credential, or will get one: --no-enrol with a token leaves it to the agent's first start.
sync=0
if [ -n "$cp_url" ] && { [ "$enrolled" = 1 ] || [ -n "$token" ]; }; then sync=1; fi
[ "$enrolled" = 1 ] && sync_token='' || sync_token=$token
wrote=$(OUTPOST_ENROL_TOKEN=$sync_token "$node_bin" -e '
  const fs = require("fs");
  const [file, deviceId, cp, sync] = process.argv.slice(1);
  const token = process.env.OUTPOST_ENROL_TOKEN;
  const existed = fs.existsSync(file);
  const config = existed ? JSON.parse(fs.readFileSync(file, "utf8"))
    : { deviceId, dataDir: "/var/lib/outpost", log: { level: "info" },
        http: { host: "127.0.0.1", port: 8470 }, uplink: { url: "mqtt://127.0.0.1:1883" } };
  let changed = !existed;
  // An operator-written config is only added to, never rewritten: a sync section present
  // (even disabled) is theirs.
  if (cp && config.controlPlane === undefined) { config.controlPlane = { url: cp }; changed = true; }
  if (sync === "1" && config.sync === undefined) {
    config.sync = { enabled: true, url: cp, ...(token ? { enrolmentToken: token } : {}) };
    // The control plane serves the TUF repository and the director; sync.url implies both.
    config.updates ??= { enabled: true, pinnedRoot: "/etc/outpost/root.json" };
    changed = true;
  }
  if (changed) {
    fs.writeFileSync(`${file}.new`, JSON.stringify(config, null, 2) + "\n", { mode: 0o640 });
    fs.renameSync(`${file}.new`, file);
  }
  console.log(!existed ? "new" : changed ? "added" : "kept");
' "$etc/agent.json" "$device_id" "$cp_url" "$sync") || die "cannot write $etc/agent.json"
[ "$wrote" = kept ] || own "0:$gid" "$etc/agent.json"
case "$wrote" in
  new) say "wrote /etc/outpost/agent.json (edit it: broker URL, TLS, sensors)" ;;
  added) say "added the control plane (sync, updates) to the existing /etc/outpost/agent.json" ;;
  *) say "kept the existing /etc/outpost/agent.json" ;;
esac
if [ ! -f "$etc/agent.env" ]; then
  install -m 0640 "$release/deploy/config/agent.env.example" "$etc/agent.env"
  own "0:$gid" "$etc/agent.env"
fi

cat > "$R/usr/local/bin/outpost-agent.new" <<WRAPPER
#!/bin/sh
exec $node_bin /opt/outpost/current/dist/agent/cli.js "\$@"
WRAPPER
chmod 0755 "$R/usr/local/bin/outpost-agent.new"
mv "$R/usr/local/bin/outpost-agent.new" "$R/usr/local/bin/outpost-agent"

sed "s#^ExecStart=/usr/bin/node #ExecStart=$node_bin #" "$release/deploy/outpost-agent.service" \
  > "$R/etc/systemd/system/outpost-agent.service.new"
chmod 0644 "$R/etc/systemd/system/outpost-agent.service.new"
mv "$R/etc/systemd/system/outpost-agent.service.new" "$R/etc/systemd/system/outpost-agent.service"

# --- systemd ------------------------------------------------------------------------------
if [ -z "$R" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable outpost-agent.service >/dev/null
  if [ "$start" = 1 ]; then
    systemctl restart outpost-agent.service
    say "outpost-agent started; check it with: outpost-agent doctor; journalctl -u outpost-agent -f"
  fi
else
  say "systemd not managed here (--root or no systemd): unit written to $R/etc/systemd/system/outpost-agent.service"
fi
say "done"

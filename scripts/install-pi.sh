#!/usr/bin/env bash
# Install (or remove) Stretch Companion as a systemd service on Raspberry Pi OS Bookworm.
# Run from a checkout of the project:  sudo scripts/install-pi.sh [--mock] [--uninstall [--purge]]
# Safe to run again: it upgrades the installed code and keeps the configuration.
# --mock installs the same service on a machine without Pi hardware (a PC, a container):
# mock pins in the config, no Pi-only packages, no raspi-config.
set -euo pipefail

APP=stretch-companion
SERVICE_USER=stretch
DEVICE_GROUPS=(gpio i2c audio)
PREFIX=/opt/$APP
VENV=$PREFIX/venv
CONF_DIR=/etc/$APP
CONF=$CONF_DIR/config.toml
STATE_DIR=/var/lib/$APP
CACHE_DIR=/var/cache/$APP
UNIT=$APP.service
UNIT_DEST=/etc/systemd/system/$UNIT
WEB_DROPIN=/etc/systemd/system/$UNIT.d/web.conf
MQTT_DROPIN=/etc/systemd/system/$UNIT.d/mqtt.conf # see scripts/mqtt-dropin.sh
APT_PACKAGES=(espeak-ng libespeak-ng1 alsa-utils python3-venv python3-dev python3-lgpio i2c-tools)
# Only in Raspberry Pi OS's archive; not needed with --mock, skipped (said) when absent.
PI_ONLY_PACKAGES=(python3-lgpio)
# What this installer created (so --uninstall removes only that), kept beside the venv.
CREATED=$PREFIX/installer-created
MOCK=no
REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)

usage() {
    cat <<EOF
Usage: sudo $0 [--mock] [--uninstall [--purge]]

Installs Stretch Companion from this checkout ($REPO):
  - apt packages: ${APT_PACKAGES[*]}
  - system user '$SERVICE_USER' in groups ${DEVICE_GROUPS[*]} (created if missing)
  - a virtualenv in $VENV (with system site packages, for python3-lgpio)
  - $CONF from 'stretch-companion config --default', only if it does not exist
  - I2C turned on (raspi-config) when the config has [sensor] enabled = true
  - the systemd unit $UNIT_DEST, enabled and (re)started
  - with [web] enabled = true: the web extra, a drop-in opening only the page's port,
    and the config directory writable by '$SERVICE_USER' (settings saved from the page)
  - with [mqtt] url set: the mqtt extra and a drop-in opening the network to the broker only
Running it again upgrades the code and restarts the service; the config is kept.

Options:
  --mock        for a machine without Pi hardware (a PC, a container): a new config
                gets mock pins (pins.factory = "mock") and no sensor; Pi-only
                packages and raspi-config are skipped.
  --uninstall   stop and remove the service, the virtualenv, the speech cache and
                the user (only if this installer created it). Keeps the history
                ($STATE_DIR) and the config ($CONF_DIR).
  --purge       with --uninstall: also delete the history and the config.
  -h, --help    show this help.
EOF
}

say() { printf '==> %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

have_systemd() { [[ -d /run/systemd/system ]]; }

# ---------------------------------------------------------------- install ---

is_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
pi_only() {
    local p
    for p in "${PI_ONLY_PACKAGES[@]}"; do [[ $p == "$1" ]] && return 0; done
    return 1
}
apt_has() { [[ -n $(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ && $2 != "(none)" { print $2 }') ]]; }

install_packages() {
    local missing=() pkg wanted=()
    for pkg in "${APT_PACKAGES[@]}"; do
        if is_installed "$pkg"; then
            continue
        fi
        if [[ $MOCK == yes ]] && pi_only "$pkg"; then
            say "--mock: not installing $pkg (Pi hardware only)"
            continue
        fi
        missing+=("$pkg")
    done
    if ((${#missing[@]} == 0)); then
        say "apt packages already installed"
        return
    fi
    say "updating the apt package lists"
    apt-get update
    for pkg in "${missing[@]}"; do
        if pi_only "$pkg" && ! apt_has "$pkg"; then
            warn "$pkg is not in this system's apt sources (it comes with Raspberry Pi OS): skipped"
            continue
        fi
        wanted+=("$pkg")
    done
    ((${#wanted[@]})) || return 0
    say "installing apt packages: ${wanted[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${wanted[@]}"
}

# created_by_us user|group NAME: did this installer create it (recorded in $CREATED)?
created_by_us() { [[ -r $CREATED ]] && grep -qx "$1 $2" "$CREATED"; }
record_created() {
    mkdir -p "$PREFIX"
    created_by_us "$1" "$2" || printf '%s %s\n' "$1" "$2" >>"$CREATED"
}

create_user() {
    local group
    for group in "${DEVICE_GROUPS[@]}" "$SERVICE_USER"; do
        if ! getent group "$group" >/dev/null; then
            say "creating group $group"
            groupadd --system "$group"
            if [[ $group == "$SERVICE_USER" ]]; then record_created group "$group"; fi
        fi
    done
    local joined
    joined=$(IFS=,; echo "${DEVICE_GROUPS[*]}")
    if id -u "$SERVICE_USER" >/dev/null 2>&1; then
        say "user $SERVICE_USER exists; making sure it is in $joined"
        usermod --append --groups "$joined" "$SERVICE_USER"
    else
        say "creating system user $SERVICE_USER (groups $joined)"
        # Home is the state directory, which systemd creates (StateDirectory=).
        useradd --system --gid "$SERVICE_USER" --groups "$joined" \
            --home-dir "$STATE_DIR" --no-create-home \
            --shell /usr/sbin/nologin --comment "Stretch Companion" "$SERVICE_USER"
        record_created user "$SERVICE_USER"
    fi
}

install_venv() {
    [[ -f $REPO/pyproject.toml ]] || die "no pyproject.toml in $REPO: run the script from the project checkout"
    if [[ ! -x $VENV/bin/python ]]; then
        say "creating virtualenv $VENV"
        mkdir -p "$PREFIX"
        python3 -m venv --system-site-packages "$VENV"
    else
        say "virtualenv $VENV exists"
    fi
    say "installing stretch-companion from $REPO into $VENV"
    # A local directory is always rebuilt and reinstalled, so a re-run upgrades.
    local extras=pi
    if web_port >/dev/null; then extras=pi,web; fi # the phone page is on in the config
    if mqtt_on; then extras=$extras,mqtt; fi         # MQTT is on in the config
    "$VENV/bin/pip" install --disable-pip-version-check --no-cache-dir "${REPO}[$extras]"
    if [[ $MOCK == yes ]]; then
        return # mock pins: no lgpio needed
    fi
    "$VENV/bin/python" -c 'import lgpio' 2>/dev/null ||
        warn "lgpio cannot be imported in $VENV: the GPIO pins will not work (is python3-lgpio installed?)"
}

# A Python with tomllib (3.11+): the venv's, else the system's.
toml_python() {
    if [[ -x $VENV/bin/python ]]; then echo "$VENV/bin/python"; else echo python3; fi
}

# toml_get KEY.PATH FILE: print the value at KEY.PATH of the TOML FILE as JSON (true,
# "mock"); exit 1 when absent, 2 when FILE is not valid TOML.
toml_get() {
    "$(toml_python)" - "$1" "$2" <<'PY'
import json, sys, tomllib
try:
    with open(sys.argv[2], "rb") as f:
        value = tomllib.load(f)
except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
    print(f"{sys.argv[2]}: {exc}", file=sys.stderr)
    sys.exit(2)
for key in sys.argv[1].split("."):
    if not isinstance(value, dict) or key not in value:
        sys.exit(1)
    value = value[key]
print(json.dumps(value, default=str))
PY
}

write_config() {
    if [[ ! -d $CONF_DIR ]]; then
        # only a new directory gets a mode: one the user changed is left as it is
        install -d -m 0755 "$CONF_DIR"
    fi
    if [[ -e $CONF ]]; then
        say "keeping existing $CONF"
        if [[ $MOCK == yes && $(toml_get pins.factory "$CONF" 2>/dev/null) != '"mock"' ]]; then
            warn "--mock, but $CONF does not set pins.factory = \"mock\": the service will look for real pins"
        fi
        return
    fi
    say "writing default configuration to $CONF"
    local tmp
    tmp=$(mktemp "$CONF_DIR/.config.toml.XXXXXX")
    if ! "$VENV/bin/stretch-companion" config --default >"$tmp"; then
        rm -f "$tmp"
        die "'stretch-companion config --default' failed"
    fi
    if [[ $MOCK == yes ]]; then
        say "--mock: mock pins, no strap sensor"
        # the first `factory = ...` line is the one in [pins]; checked below
        sed -i '0,/^factory = .*/s//factory = "mock"  # --mock: no Pi hardware/' "$tmp"
        if [[ $(toml_get pins.factory "$tmp") != '"mock"' || $(toml_get sensor.enabled "$tmp") != false ]]; then
            rm -f "$tmp"
            die "could not write a mock configuration"
        fi
    fi
    chmod 0644 "$tmp"
    mv -f "$tmp" "$CONF"
}

sensor_enabled() {
    # true when the config, read as TOML, has sensor.enabled = true (in any spelling:
    # [sensor] table, dotted key, inline table)
    [[ -r $CONF ]] || return 1
    local value status=0
    value=$(toml_get sensor.enabled "$CONF") || status=$?
    if ((status == 2)); then
        warn "$CONF is not valid TOML; 'stretch-companion config --check $CONF' says why"
        return 1
    fi
    [[ $value == true ]]
}

web_port() {
    # prints the port of web.listen and succeeds when the config has web.enabled = true
    [[ -r $CONF && $(toml_get web.enabled "$CONF" 2>/dev/null) == true ]] || return 1
    local listen
    listen=$(toml_get web.listen "$CONF" 2>/dev/null) || listen='"0.0.0.0:8321"'
    listen=${listen%\"}
    echo "${listen##*:}"
}

mqtt_on() {
    # succeeds when the config has a non-empty [mqtt] url
    local url
    [[ -r $CONF ]] && url=$(toml_get mqtt.url "$CONF" 2>/dev/null) && [[ $url != '""' ]]
}

setup_mqtt() {
    # the drop-in that opens the network to the broker (or removes it): scripts/mqtt-dropin.sh
    # shellcheck disable=SC1091 # checked on its own (tests/test_mqtt_unit.py)
    . "$REPO/scripts/mqtt-dropin.sh"
    mqtt_dropin || die "[mqtt] in $CONF is not valid; fix it and run this again"
}

setup_web() {
    local port
    if ! port=$(web_port); then
        rm -f "$WEB_DROPIN"
        return
    fi
    say "phone page on (port $port): opening only that port; config writable by $SERVICE_USER"
    mkdir -p "$(dirname "$WEB_DROPIN")"
    sed "s/@PORT@/$port/" "$REPO/systemd/web.conf" >"$WEB_DROPIN"
    chmod 0644 "$WEB_DROPIN"
    chgrp "$SERVICE_USER" "$CONF_DIR" "$CONF"
    chmod 0775 "$CONF_DIR"
    chmod 0664 "$CONF"
    say "pair a phone with the code the box says, or the one 'sudo $VENV/bin/$APP web-code' prints"
}

enable_i2c() {
    if [[ $MOCK == yes ]]; then
        say "--mock: leaving I2C and raspi-config alone"
        return
    fi
    if ! sensor_enabled; then
        say "tension sensor off in $CONF: leaving I2C as it is"
        return
    fi
    if ! command -v raspi-config >/dev/null; then
        warn "tension sensor on, but raspi-config is missing: enable I2C yourself (dtparam=i2c_arm=on)"
        return
    fi
    say "tension sensor on: enabling I2C"
    raspi-config nonint do_i2c 0 # 0 means "enable"
    if [[ ! -e /dev/i2c-1 ]]; then
        warn "/dev/i2c-1 is not there yet: reboot before using the sensor"
    fi
}

install_unit() {
    say "installing $UNIT_DEST"
    install -m 0644 "$REPO/systemd/$UNIT" "$UNIT_DEST"
    if ! have_systemd; then
        warn "systemd is not running (chroot or image build?): enable it later with 'systemctl enable --now $UNIT'"
        systemctl enable "$UNIT" || true
        return
    fi
    systemctl daemon-reload
    systemctl enable "$UNIT"
    # restart rather than start, so that a re-run picks up new code and unit.
    say "starting $UNIT"
    if ! systemctl restart "$UNIT"; then
        systemctl --no-pager --lines=20 status "$UNIT" || true
        die "$UNIT did not start; see 'journalctl -u $APP' (exit status 78 means a bad $CONF)"
    fi
    say "running: 'systemctl status $APP', 'journalctl -u $APP -f'"
}

do_install() {
    if [[ -r /etc/os-release ]]; then
        # shellcheck disable=SC1091
        . /etc/os-release
        if [[ ${VERSION_CODENAME:-} != bookworm ]]; then
            warn "made for Raspberry Pi OS Bookworm; this is ${PRETTY_NAME:-unknown}"
        fi
    fi
    umask 022 # the venv and the config must be readable by $SERVICE_USER
    install_packages
    create_user
    install_venv
    write_config
    enable_i2c
    setup_web
    setup_mqtt
    install_unit
    say "done"
}

# -------------------------------------------------------------- uninstall ---

do_uninstall() {
    local purge=$1
    if [[ -e $UNIT_DEST ]] || systemctl cat "$UNIT" >/dev/null 2>&1; then
        say "stopping and disabling $UNIT"
        if have_systemd; then
            systemctl disable --now "$UNIT" || true
        else
            systemctl disable "$UNIT" || true
        fi
    fi
    rm -f "$UNIT_DEST" "$WEB_DROPIN" "$MQTT_DROPIN"
    if have_systemd; then
        systemctl daemon-reload
        systemctl reset-failed "$UNIT" 2>/dev/null || true
    fi
    if id -u "$SERVICE_USER" >/dev/null 2>&1; then
        if created_by_us user "$SERVICE_USER"; then
            say "removing user $SERVICE_USER"
            userdel "$SERVICE_USER"
        else
            say "keeping user $SERVICE_USER (it was there before the install)"
        fi
    fi
    if getent group "$SERVICE_USER" >/dev/null && created_by_us group "$SERVICE_USER"; then
        groupdel "$SERVICE_USER" || warn "group $SERVICE_USER kept (still in use)"
    fi
    say "removing $PREFIX and $CACHE_DIR"
    rm -rf -- "$PREFIX" "$CACHE_DIR"
    if [[ $purge == yes ]]; then
        say "purging history $STATE_DIR and config $CONF_DIR"
        rm -rf -- "$STATE_DIR" "$CONF_DIR"
    else
        # On a later install systemd hands the history to the new user (StateDirectory=).
        if [[ -e $STATE_DIR ]]; then
            say "kept history in $STATE_DIR (delete it with --uninstall --purge)"
        fi
        if [[ -e $CONF_DIR ]]; then
            say "kept config in $CONF_DIR"
        fi
    fi
    say "uninstalled (apt packages, the gpio/i2c/audio groups and I2C settings are left as they are)"
}

# ------------------------------------------------------------------- main ---

main() {
    local uninstall=no purge=no arg
    for arg in "$@"; do
        case $arg in
        --uninstall) uninstall=yes ;;
        --purge) purge=yes ;;
        --mock) MOCK=yes ;;
        -h | --help)
            usage
            return 0
            ;;
        *)
            usage >&2
            die "unknown option: $arg"
            ;;
        esac
    done
    if [[ $purge == yes && $uninstall == no ]]; then
        die "--purge deletes the history and only goes with --uninstall"
    fi
    ((EUID == 0)) || die "run as root: sudo $0 $*"
    if [[ $uninstall == yes ]]; then
        do_uninstall "$purge"
    else
        do_install
    fi
}

# Sourced (the tests call single functions), it only defines them.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    main "$@"
fi

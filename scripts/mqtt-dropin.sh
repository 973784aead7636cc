#!/usr/bin/env bash
# The systemd drop-in that opens the network for MQTT (and only for it).
#
# The unit keeps the network closed. When the config has [mqtt] url set, this writes
# /etc/systemd/system/stretch-companion.service.d/mqtt.conf allowing IP traffic to the
# broker's addresses (and the name servers, for a broker given by name) and nothing else;
# when MQTT is off it removes that file. The text comes from `python -m device.addons.mqtt_unit`.
#
# Sourced by scripts/install-pi.sh (setup_mqtt, before install_unit reloads systemd), or
# run on its own after changing [mqtt] in the config:
#   sudo scripts/mqtt-dropin.sh     (writes or removes the drop-in, reloads, restarts)

MQTT_APP=${APP:-stretch-companion}
MQTT_VENV=${VENV:-/opt/$MQTT_APP/venv}
MQTT_CONF=${CONF:-/etc/$MQTT_APP/config.toml}
MQTT_DROPIN_DIR=/etc/systemd/system/$MQTT_APP.service.d
MQTT_DROPIN=$MQTT_DROPIN_DIR/mqtt.conf

mqtt_dropin() {
    local text
    if [[ ! -r $MQTT_CONF ]]; then
        rm -f "$MQTT_DROPIN"
        return 0
    fi
    if ! text=$("$MQTT_VENV/bin/python" -m device.addons.mqtt_unit --config "$MQTT_CONF"); then
        printf 'error: %s: fix the [mqtt] settings first\n' "$MQTT_CONF" >&2
        return 1
    fi
    if [[ -z $text ]]; then
        if [[ -e $MQTT_DROPIN ]]; then
            printf '==> MQTT off: removing %s (network closed)\n' "$MQTT_DROPIN"
            rm -f "$MQTT_DROPIN"
            rmdir "$MQTT_DROPIN_DIR" 2>/dev/null || true
        fi
        return 0
    fi
    if ! "$MQTT_VENV/bin/python" -c 'import paho.mqtt.client' 2>/dev/null; then
        printf '==> MQTT on: installing paho-mqtt into %s\n' "$MQTT_VENV"
        "$MQTT_VENV/bin/pip" install --disable-pip-version-check --no-cache-dir 'paho-mqtt>=2' ||
            return 1
    fi
    printf '==> MQTT on: writing %s (network open to the broker only)\n' "$MQTT_DROPIN"
    mkdir -p "$MQTT_DROPIN_DIR"
    printf '%s\n' "$text" >"$MQTT_DROPIN.tmp"
    chmod 0644 "$MQTT_DROPIN.tmp"
    mv -f "$MQTT_DROPIN.tmp" "$MQTT_DROPIN"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    set -euo pipefail
    if [[ $(id -u) != 0 ]]; then
        printf 'error: run as root: sudo %s\n' "$0" >&2
        exit 1
    fi
    mqtt_dropin
    if [[ -d /run/systemd/system ]]; then
        systemctl daemon-reload
        systemctl try-restart "$MQTT_APP.service"
    fi
fi

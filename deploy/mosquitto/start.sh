#!/bin/sh
# Start mosquitto for the compose stack: check the .env secrets, build the password file, exec mosquitto.
# Everything mosquitto reads after it drops root (password file, ACLs, TLS files) goes to $AUTH_DIR, private
# to the mosquitto user; the mounted configuration directory stays read-only.
#
# The password file is rebuilt at every start from
#   - the service users' passwords in the environment (from .env): svc.ingest, svc.dashboard, and
#     svc.simulator when MQTT_SIMULATOR_PASSWORD is set (compose profile "demo"), svc.hl7export when
#     MQTT_HL7_PASSWORD is set (compose profile "hl7");
#   - svc.health, with a random password made now, for the container healthcheck;
#   - the device users in devices.passwd (hashed lines written by deploy/add-device).
# Plaintext passwords never reach the command line or the disk outside the container's private directory.
# Paths can be overridden (the tests run this script outside a container).
set -eu

CONFIG_DIR=${MOSQUITTO_CONFIG_DIR:-/mosquitto/config}
AUTH_DIR=${MOSQUITTO_AUTH_DIR:-/mosquitto/auth}
DATA_DIR=${MOSQUITTO_DATA_DIR:-/mosquitto/data}
DEVICES_FILE=${MOSQUITTO_DEVICES_FILE:-$CONFIG_DIR/devices.passwd}
CHECK_SECRETS=${CHECK_SECRETS:-/usr/local/bin/check-secrets}
PASSWD=${MOSQUITTO_PASSWD:-mosquitto_passwd}

names="MQTT_INGEST_PASSWORD MQTT_DASHBOARD_PASSWORD"
if [ -n "${MQTT_SIMULATOR_PASSWORD:-}" ]; then
    names="$names MQTT_SIMULATOR_PASSWORD"
fi
if [ -n "${MQTT_HL7_PASSWORD:-}" ]; then
    names="$names MQTT_HL7_PASSWORD"
fi
# shellcheck disable=SC2086 # word splitting of the names is intended
sh "$CHECK_SECRETS" $names -- true

umask 077
mkdir -p "$AUTH_DIR"
work="$AUTH_DIR/passwd.new"
health=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
{
    printf 'svc.ingest:%s\n' "$MQTT_INGEST_PASSWORD"
    printf 'svc.dashboard:%s\n' "$MQTT_DASHBOARD_PASSWORD"
    if [ -n "${MQTT_SIMULATOR_PASSWORD:-}" ]; then
        printf 'svc.simulator:%s\n' "$MQTT_SIMULATOR_PASSWORD"
    fi
    if [ -n "${MQTT_HL7_PASSWORD:-}" ]; then
        printf 'svc.hl7export:%s\n' "$MQTT_HL7_PASSWORD"
    fi
    printf 'svc.health:%s\n' "$health"
} > "$work"
"$PASSWD" -U "$work"

devices=0
if [ -f "$DEVICES_FILE" ]; then
    line_no=0
    while IFS= read -r line || [ -n "$line" ]; do
        line_no=$((line_no + 1))
        case "$line" in '' | '#'*) continue ;; esac
        user=${line%%:*}
        hash=${line#*:}
        case "$user" in
            '' | *[!A-Za-z0-9_-]*)
                echo "start.sh: $DEVICES_FILE line $line_no: '$user' is not a chair id (1-64 of A-Z a-z 0-9 _ -)" >&2
                rm -f "$work"; exit 78 ;;
        esac
        if [ "${#user}" -gt 64 ]; then
            echo "start.sh: $DEVICES_FILE line $line_no: chair id longer than 64 characters" >&2
            rm -f "$work"; exit 78
        fi
        case "$hash" in
            '$6$'* | '$7$'*) ;;
            *) echo "start.sh: $DEVICES_FILE line $line_no: not a mosquitto password hash (use deploy/add-device)" >&2
               rm -f "$work"; exit 78 ;;
        esac
        printf '%s:%s\n' "$user" "$hash" >> "$work"
        devices=$((devices + 1))
    done < "$DEVICES_FILE"
fi
if [ "$devices" -eq 0 ]; then
    echo "start.sh: no device users yet: add them with deploy/add-device CHAIR_ID (docs/deployment.md)" >&2
fi

mv "$work" "$AUTH_DIR/passwd"
printf '%s\n' "$health" > "$AUTH_DIR/health"
cp "$CONFIG_DIR/acl" "$AUTH_DIR/acl"
# TLS files (conf.d/tls.conf): copied next to the password file, so that mosquitto, which drops to its own
# user before it loads them, can read the key without the key being world-readable on the host.
rm -rf "$AUTH_DIR/certs"
if [ -d "$CONFIG_DIR/certs" ]; then
    mkdir -p "$AUTH_DIR/certs"
    for file in "$CONFIG_DIR/certs"/*; do
        if [ -f "$file" ]; then
            cp "$file" "$AUTH_DIR/certs/"
        fi
    done
fi
# mosquitto drops to its own user before it reads these, and (from 2.0.16 on) warns about files not owned
# by that user or readable by others: owned by mosquitto, readable by nobody else.
if [ "$(id -u)" = 0 ] && id mosquitto > /dev/null 2>&1; then
    chown -R mosquitto:mosquitto "$AUTH_DIR"
    chmod 0700 "$AUTH_DIR"
    chmod 0600 "$AUTH_DIR/passwd" "$AUTH_DIR/health" "$AUTH_DIR/acl"
    if [ -d "$AUTH_DIR/certs" ]; then
        chmod 0700 "$AUTH_DIR/certs"
        chmod 0600 "$AUTH_DIR/certs"/*
    fi
    if [ -d "$DATA_DIR" ]; then
        chown -R mosquitto:mosquitto "$DATA_DIR"
    fi
fi
echo "start.sh: password file ready: service users for $names, $devices device users" >&2
exec "$@"

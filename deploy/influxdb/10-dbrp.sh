#!/bin/bash
# Runs once, when the influxdb container initialises an empty data volume (DOCKER_INFLUXDB_INIT_MODE=setup),
# after the org, bucket and token from .env exist. Maps InfluxQL database "vitals", retention policy "autogen"
# to the bucket, so the store's reads (InfluxQL on /query, the same on 1.x, 2.x and 3.x) find the data.
set -euo pipefail

influx v1 dbrp create \
    --org "${DOCKER_INFLUXDB_INIT_ORG}" \
    --bucket-id "${DOCKER_INFLUXDB_INIT_BUCKET_ID}" \
    --db "${DOCKER_INFLUXDB_INIT_BUCKET}" \
    --rp autogen \
    --default
echo "dbrp: InfluxQL database ${DOCKER_INFLUXDB_INIT_BUCKET}/autogen -> bucket ${DOCKER_INFLUXDB_INIT_BUCKET}"

#!/usr/bin/env bash
# Creates Pacesetter's topics on the Kafka of docker-compose.yml (run by the kafka-init service),
# and re-applies their settings on every start so that a changed retention takes effect.
# Partition counts are never changed here: see "Scaling" in README.md.
set -euo pipefail

bootstrap="${KAFKA_BOOTSTRAP:-kafka:9092}"
partitions="${PACESETTER_PARTITIONS:-8}"
replicas="${PACESETTER_REPLICATION_FACTOR:-1}"
bin="${KAFKA_BIN:-/opt/kafka/bin}"
day_ms=86400000

topic() {  # name, then topic configs as key=value
  local name="$1"
  shift
  local args=() alter=()
  for config in "$@"; do
    args+=(--config "$config")
    # kafka-configs.sh separates configs with commas: a list value goes in brackets
    if [[ "${config#*=}" == *,* ]]; then alter+=("${config%%=*}=[${config#*=}]"); else alter+=("$config"); fi
  done
  "$bin/kafka-topics.sh" --bootstrap-server "$bootstrap" --create --if-not-exists \
    --topic "$name" --partitions "$partitions" --replication-factor "$replicas" "${args[@]}"
  "$bin/kafka-configs.sh" --bootstrap-server "$bootstrap" --alter --entity-type topics \
    --entity-name "$name" --add-config "$(IFS=,; echo "${alter[*]}")"
}

# Workers rebuild their state from the events after a restart, and a call is a repeat contact
# for 7 days: keep 14 days (the repeat window, the 2 h grace and room for a long outage).
topic "${PACESETTER_TOPIC_EVENTS:-pacesetter.events}" \
  cleanup.policy=delete "retention.ms=$((14 * day_ms))"

# Facts keyed by identity: the newest record per key is the truth. Hourly segments let the
# cleaner compact soon, so an API replica starting up reads one record per key, not every update.
# Keys are unique per interval or alert, so compaction alone would keep them all for ever: they
# are also deleted after the API's horizon (PACESETTER_READ_MODEL_DAYS, 8) and 2 days more. The
# API reads only that horizon at start; older records are in the history store.
output_days=$(( ${PACESETTER_READ_MODEL_DAYS:-8} + 2 ))
for name in "${PACESETTER_TOPIC_INTERVALS:-pacesetter.intervals}" \
            "${PACESETTER_TOPIC_LIVE:-pacesetter.live}" \
            "${PACESETTER_TOPIC_ALERTS:-pacesetter.alerts}"; do
  topic "$name" cleanup.policy=compact,delete "retention.ms=$((output_days * day_ms))" \
    segment.ms=3600000 min.cleanable.dirty.ratio=0.1
done

# Long enough to notice, fix the feed and replay the rejected events.
topic "${PACESETTER_TOPIC_DEADLETTER:-pacesetter.deadletter}" \
  cleanup.policy=delete "retention.ms=$((30 * day_ms))"

"$bin/kafka-topics.sh" --bootstrap-server "$bootstrap" --describe \
  --topic "${PACESETTER_TOPIC_EVENTS:-pacesetter.events}"

#!/usr/bin/env bash
# Prints the classpath for the Java programs in compat-tests/java/: the absolute
# paths of kafka-clients 4.1.1 and its codec/logging jars from the local Maven
# repository (fetched from Maven Central by .ci/install-deps with
# `mvn dependency:get`), joined with ':'. Fails loudly if any is missing.
#
#   java -cp "$(compat-tests/java/classpath.sh)" compat-tests/java/RoundTrip.java --bootstrap HOST:PORT
set -euo pipefail
repo="${MAVEN_REPO:-$HOME/.m2/repository}"
jars=(
  org/apache/kafka/kafka-clients/4.1.1/kafka-clients-4.1.1.jar
  com/github/luben/zstd-jni/1.5.6-10/zstd-jni-1.5.6-10.jar
  org/lz4/lz4-java/1.8.0/lz4-java-1.8.0.jar
  org/xerial/snappy/snappy-java/1.1.10.7/snappy-java-1.1.10.7.jar
  org/slf4j/slf4j-api/1.7.36/slf4j-api-1.7.36.jar
)
cp=()
for jar in "${jars[@]}"; do
  f="$repo/$jar"
  if [[ ! -f "$f" ]]; then
    echo "classpath.sh: missing $f (run .ci/install-deps, which runs mvn dependency:get -Dartifact=org.apache.kafka:kafka-clients:4.1.1)" >&2
    exit 1
  fi
  cp+=("$f")
done
(IFS=:; echo "${cp[*]}")

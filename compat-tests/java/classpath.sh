#!/usr/bin/env bash
# Prints the classpath for compat-tests/java/RoundTrip.java: the absolute paths
# of kafka-clients and its codec/logging jars, joined with ':'. The jars come
# from the PyPI package shigawire-apache-flink-libraries (pyflink/lib/ in
# site-packages), installed by .ci/install-deps. Fails loudly if any is missing.
#
#   java -cp "$(compat-tests/java/classpath.sh)" compat-tests/java/RoundTrip.java --bootstrap HOST:PORT
set -euo pipefail
purelib="$(python3 -c 'import sysconfig;print(sysconfig.get_paths()["purelib"])')"
lib="$purelib/pyflink/lib"
cp=()
for jar in kafka-clients lz4-java snappy-java zstd-jni slf4j-api; do
  f="$lib/$jar.jar"
  if [[ ! -f "$f" ]]; then
    echo "classpath.sh: missing $f (install shigawire-apache-flink-libraries==2.0.0.post1 with pip --no-deps, or run .ci/install-deps)" >&2
    exit 1
  fi
  cp+=("$f")
done
(IFS=:; echo "${cp[*]}")

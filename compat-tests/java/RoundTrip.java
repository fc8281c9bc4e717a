// Round trip through a Kafka-compatible broker with the official Java client
// (kafka-clients 4.1), using only kafka-clients APIs.
//
//   java -cp "$(compat-tests/java/classpath.sh)" compat-tests/java/RoundTrip.java --bootstrap HOST:PORT
//
// (JDK 11+ single-file source launch: no separate javac step.)
//
// Admin: CreateTopics (3 partitions, retention.ms=3600000), DescribeTopics,
// DescribeConfigs, CreatePartitions (to 4), DescribeCluster. Producer: Java
// defaults (idempotent, acks=all: InitProducerId and sequence checks), only
// linger.ms=5 and the codec set; one producer per codec (none, gzip, snappy,
// lz4, zstd), each sending --records keyed records with headers and explicit
// CreateTime timestamps. Consumer: no group.id (no group coordinator yet),
// assign() all partitions + seekToBeginning, read everything back and check
// key, value, headers, timestamp, per-partition order and the offset each
// producer callback reported; plus offsetsForTimes, beginningOffsets and
// endOffsets.
//
// Exit codes (same as the Python/JS scripts): 0 all records round-tripped,
// 1 mismatch or client error (message on stderr), 2 bad command line,
// 3 time bound hit (watchdog).

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Random;
import java.util.Set;
import java.util.TreeMap;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.record.TimestampType;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.utils.AppInfoParser;

public class RoundTrip {
    static final int NUM_PARTITIONS = 3;
    static final int FINAL_PARTITIONS = 4;
    static final String RETENTION_MS = "3600000";
    static final String[] DEFAULT_CODECS = {"none", "gzip", "snappy", "lz4", "zstd"};

    static String client = "java kafka-clients";
    static boolean verbose = false;
    static long deadlineNanos;

    // ---------------------------------------------------------------- records

    /** One record as sent, plus where the producer was told it landed. */
    static final class Rec {
        final String codec;
        final int index;
        final byte[] key;
        final byte[] value; // may be null (tombstone) or empty
        final List<Header> headers;
        final long timestamp;
        int partition = -1;
        long offset = -1;

        Rec(String codec, int index, byte[] key, byte[] value, List<Header> headers, long timestamp) {
            this.codec = codec;
            this.index = index;
            this.key = key;
            this.value = value;
            this.headers = headers;
            this.timestamp = timestamp;
        }

        String name() {
            return new String(key, StandardCharsets.UTF_8);
        }
    }

    /**
     * A deterministic, varied set of records for one codec: unique keys
     * "<codec>-<index>", values mixing compressible text, random bytes, empty
     * values and a few nulls; headers from none to several, including a
     * repeated header key, an empty and a null header value. Timestamps are
     * explicit CreateTimes between 30 and 5 minutes ago (the topic has
     * retention.ms=1h, and brokers reject timestamps too far in the future),
     * increasing within a codec but overlapping across codecs, so not monotonic
     * within a partition.
     */
    static List<Rec> makeRecords(String codec, int n, long baseTs) {
        int step = timestampStep(n);
        Random rng = new Random(("vltava-compat-" + codec).hashCode());
        List<Rec> out = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            byte[] key = String.format("%s-%06d", codec, i).getBytes(StandardCharsets.UTF_8);
            byte[] value;
            int kind = i % 10;
            if (i % 97 == 13) {
                value = null;
            } else if (i % 89 == 7) {
                value = new byte[0];
            } else if (kind < 5) {
                value = ("record " + i + " of codec " + codec + "; ").repeat(1 + rng.nextInt(40))
                        .getBytes(StandardCharsets.UTF_8);
            } else if (kind < 8) {
                value = new byte[1 + rng.nextInt(600)];
                rng.nextBytes(value);
            } else if (kind == 8) {
                value = ("žluťoučký kůň úpěl ďábelské ódy " + i + " ").repeat(1 + rng.nextInt(8))
                        .getBytes(StandardCharsets.UTF_8);
            } else {
                byte[] chunk = new byte[1 + rng.nextInt(64)];
                rng.nextBytes(chunk);
                int reps = 1 + rng.nextInt(30);
                value = new byte[chunk.length * reps];
                for (int r = 0; r < reps; r++) System.arraycopy(chunk, 0, value, r * chunk.length, chunk.length);
            }
            List<Header> headers = new ArrayList<>();
            int h = i % 4;
            if (h >= 1) headers.add(new RecordHeader("seq", String.valueOf(i).getBytes(StandardCharsets.UTF_8)));
            if (h >= 2) {
                headers.add(new RecordHeader("codec", codec.getBytes(StandardCharsets.UTF_8)));
                byte[] bin = new byte[rng.nextInt(33)];
                rng.nextBytes(bin);
                headers.add(new RecordHeader("bin", bin));
            }
            if (h >= 3) {
                headers.add(new RecordHeader("seq", ("dup-" + i).getBytes(StandardCharsets.UTF_8))); // repeated key
                headers.add(new RecordHeader("empty", new byte[0]));
                headers.add(new RecordHeader("null", (byte[]) null));
            }
            long ts = baseTs + (long) i * step + rng.nextInt(step);
            out.add(new Rec(codec, i, key, value, headers, ts));
        }
        return out;
    }

    /** Milliseconds between consecutive records' timestamps: at most 1 s, all within 25 minutes. */
    static int timestampStep(int n) {
        return Math.max(1, Math.min(1000, 25 * 60 * 1000 / n));
    }

    // ------------------------------------------------------------ utilities

    static final class CheckFailed extends RuntimeException {
        private static final long serialVersionUID = 1L;

        CheckFailed(String m) {
            super(m);
        }
    }

    static void check(boolean cond, String message) {
        if (!cond) throw new CheckFailed(message);
    }

    static void fail(String message) {
        System.out.flush();
        System.err.println(client + ": FAILED: " + message);
        System.err.flush();
        System.exit(1);
    }

    static void usage(String message) {
        System.err.println("RoundTrip: " + message);
        System.err.println("usage: java -cp \"$(classpath.sh)\" RoundTrip.java --bootstrap HOST:PORT"
                + " [--records N] [--codecs a,b] [--timeout S] [--topic NAME] [-v]");
        System.exit(2);
    }

    static void log(String message) {
        if (verbose) System.out.printf("[%s %tT] %s%n", client, System.currentTimeMillis(), message);
    }

    /** Seconds left before the overall deadline (at least 1, so a call still gets a chance). */
    static long remainingMs() {
        return Math.max(1000, TimeUnit.NANOSECONDS.toMillis(deadlineNanos - System.nanoTime()) - 1000);
    }

    static <T> T await(KafkaFuture<T> f, String what) {
        try {
            return f.get(remainingMs(), TimeUnit.MILLISECONDS);
        } catch (ExecutionException e) {
            throw new CheckFailed(what + " failed: " + describe(e.getCause()));
        } catch (TimeoutException e) {
            throw new CheckFailed(what + " timed out");
        } catch (InterruptedException e) {
            throw new CheckFailed(what + " interrupted");
        }
    }

    static String describe(Throwable t) {
        StringBuilder sb = new StringBuilder(t.toString());
        for (Throwable c = t.getCause(); c != null && c != c.getCause(); c = c.getCause()) sb.append(" <- ").append(c);
        return sb.toString();
    }

    static String show(byte[] b) {
        if (b == null) return "null";
        String s = new String(b, StandardCharsets.UTF_8);
        return b.length + " bytes \"" + (s.length() > 60 ? s.substring(0, 57) + "..." : s) + "\"";
    }

    static String showHeaders(Iterable<Header> hs) {
        List<String> out = new ArrayList<>();
        for (Header h : hs) out.add(h.key() + "=" + show(h.value()));
        return out.toString();
    }

    static boolean sameHeaders(List<Header> want, Header[] got) {
        if (want.size() != got.length) return false;
        for (int i = 0; i < got.length; i++) {
            if (!want.get(i).key().equals(got[i].key())) return false;
            if (!Arrays.equals(want.get(i).value(), got[i].value())) return false;
        }
        return true;
    }

    // ------------------------------------------------------------------ main

    public static void main(String[] argv) {
        String bootstrap = null, topic = null;
        int records = 500;
        double timeout = 120;
        List<String> codecs = Arrays.asList(DEFAULT_CODECS);
        for (int i = 0; i < argv.length; i++) {
            String a = argv[i];
            if (a.equals("-v") || a.equals("--verbose")) {
                verbose = true;
                continue;
            }
            if (i + 1 >= argv.length) usage("missing value for " + a);
            String v = argv[++i];
            try {
                switch (a) {
                    case "--bootstrap": bootstrap = v; break;
                    case "--records": records = Integer.parseInt(v); break;
                    case "--codecs": codecs = Arrays.asList(v.split(",")); break;
                    case "--timeout": timeout = Double.parseDouble(v); break;
                    case "--topic": topic = v; break;
                    default: usage("unknown option " + a);
                }
            } catch (NumberFormatException e) {
                usage("bad number for " + a + ": " + v);
            }
        }
        if (bootstrap == null) usage("--bootstrap is required");
        if (records < FINAL_PARTITIONS) usage("--records must be at least " + FINAL_PARTITIONS);
        for (String c : codecs) {
            if (!Arrays.asList(DEFAULT_CODECS).contains(c)) usage("unknown codec " + c);
        }
        if (topic == null) topic = "compat-java-" + UUID.randomUUID().toString().replace("-", "").substring(0, 12);

        String version = AppInfoParser.getVersion();
        client = "java kafka-clients " + version.replaceAll("^(\\d+\\.\\d+).*", "$1");

        // Watchdog: the clients retry internally for a long time (delivery.timeout.ms
        // is 2 min by default), so bound the whole run from outside.
        final double limit = timeout;
        deadlineNanos = System.nanoTime() + (long) (timeout * 1e9);
        Thread watchdog = new Thread(() -> {
            try {
                Thread.sleep((long) (limit * 1000));
            } catch (InterruptedException e) {
                return;
            }
            System.err.printf("%s: FAILED: timed out after %.0f s%n", client, limit);
            System.err.flush();
            System.exit(3);
        }, "watchdog");
        watchdog.setDaemon(true);
        watchdog.start();

        long t0 = System.nanoTime();
        try {
            int total = run(bootstrap, topic, records, codecs, version);
            System.out.printf("%s: %d records ok (kafka-clients %s, codecs %s, %d partitions, %.1f s)%n",
                    client, total, version, String.join(",", codecs), FINAL_PARTITIONS,
                    (System.nanoTime() - t0) / 1e9);
            System.out.flush();
            System.exit(0);
        } catch (CheckFailed e) {
            fail(e.getMessage());
        } catch (Throwable e) {
            fail("unexpected client error: " + describe(e));
        }
    }

    static int run(String bootstrap, String topic, int records, List<String> codecs, String version) {
        log("kafka-clients " + version + ", bootstrap " + bootstrap + ", topic " + topic);

        // ------------------------------------------------------------ admin
        Properties ap = new Properties();
        ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        ap.put(AdminClientConfig.CLIENT_ID_CONFIG, "vltava-compat-java-admin");
        try (Admin admin = Admin.create(ap)) {
            // DescribeCluster
            DescribeClusterResult dc = admin.describeCluster();
            Collection<Node> nodes = await(dc.nodes(), "describeCluster().nodes()");
            String clusterId = await(dc.clusterId(), "describeCluster().clusterId()");
            Node controller = await(dc.controller(), "describeCluster().controller()");
            check(nodes.size() == 1, "describeCluster: expected 1 node, got " + nodes);
            Node node = nodes.iterator().next();
            check(clusterId != null && !clusterId.isEmpty(), "describeCluster: empty cluster id");
            check(controller != null && controller.id() == node.id(),
                    "describeCluster: controller " + controller + " is not the only node " + node);
            log("cluster " + clusterId + ", node " + node);

            // CreateTopics
            NewTopic nt = new NewTopic(topic, NUM_PARTITIONS, (short) 1)
                    .configs(Map.of("retention.ms", RETENTION_MS));
            await(admin.createTopics(List.of(nt)).all(), "createTopics(" + topic + ")");
            log("created topic " + topic);

            // DescribeTopics
            checkTopic(admin, topic, NUM_PARTITIONS, node);

            // DescribeConfigs
            ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
            Config cfg = await(admin.describeConfigs(List.of(res)).all(), "describeConfigs(" + topic + ")").get(res);
            check(cfg != null, "describeConfigs: no result for " + topic);
            ConfigEntry ret = cfg.get("retention.ms");
            check(ret != null, "describeConfigs: no retention.ms entry among " + cfg.entries().size() + " entries");
            check(RETENTION_MS.equals(ret.value()),
                    "describeConfigs: retention.ms = " + ret.value() + ", expected " + RETENTION_MS);
            check(ret.source() == ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG,
                    "describeConfigs: retention.ms source " + ret.source() + ", expected DYNAMIC_TOPIC_CONFIG");
            check(!ret.isDefault(), "describeConfigs: retention.ms set at creation reported as default");
            check(cfg.entries().size() >= 10,
                    "describeConfigs: only " + cfg.entries().size() + " entries: " + cfg.entries());
            for (String name : List.of("cleanup.policy", "segment.bytes", "max.message.bytes")) {
                check(cfg.get(name) != null, "describeConfigs: no " + name + " entry");
            }
            log("describeConfigs: " + cfg.entries().size() + " entries, retention.ms=" + ret.value());

            // CreatePartitions
            await(admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(FINAL_PARTITIONS))).all(),
                    "createPartitions(" + topic + " -> " + FINAL_PARTITIONS + ")");
            checkTopic(admin, topic, FINAL_PARTITIONS, node);
            log("partitions increased to " + FINAL_PARTITIONS);
        }

        // ---------------------------------------------------------- produce
        long baseTs = (System.currentTimeMillis() - 30 * 60 * 1000L) / 1000 * 1000;
        List<Rec> sent = new ArrayList<>();
        for (String codec : codecs) {
            long tc = System.nanoTime();
            List<Rec> recs = makeRecords(codec, records, baseTs);
            Properties pp = new Properties();
            pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            pp.put(ProducerConfig.CLIENT_ID_CONFIG, "vltava-compat-java-producer-" + codec);
            pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
            pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
            pp.put(ProducerConfig.LINGER_MS_CONFIG, "5");
            pp.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
            List<Future<RecordMetadata>> futures = new ArrayList<>(recs.size());
            try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(pp)) {
                for (Rec r : recs) {
                    futures.add(producer.send(new ProducerRecord<>(topic, null, r.timestamp, r.key, r.value, r.headers)));
                }
                producer.flush();
                for (int i = 0; i < recs.size(); i++) {
                    Rec r = recs.get(i);
                    RecordMetadata md;
                    try {
                        md = futures.get(i).get(remainingMs(), TimeUnit.MILLISECONDS);
                    } catch (ExecutionException e) {
                        throw new CheckFailed("produce " + codec + " " + r.name() + " failed: " + describe(e.getCause()));
                    } catch (TimeoutException | InterruptedException e) {
                        throw new CheckFailed("produce " + codec + " " + r.name() + ": no acknowledgement");
                    }
                    check(md.hasOffset() && md.offset() >= 0, "produce " + r.name() + ": no offset in " + md);
                    check(md.partition() >= 0 && md.partition() < FINAL_PARTITIONS,
                            "produce " + r.name() + ": partition " + md.partition());
                    check(md.timestamp() == r.timestamp, "produce " + r.name() + ": metadata timestamp "
                            + md.timestamp() + ", sent " + r.timestamp);
                    r.partition = md.partition();
                    r.offset = md.offset();
                }
            }
            sent.addAll(recs);
            log(String.format("produced %d %s records in %.2f s", recs.size(), codec, (System.nanoTime() - tc) / 1e9));
        }

        // Expected state per partition, in the order the producer reported offsets.
        Map<Integer, TreeMap<Long, Rec>> byPart = new HashMap<>();
        for (int p = 0; p < FINAL_PARTITIONS; p++) byPart.put(p, new TreeMap<>());
        for (Rec r : sent) {
            Rec prev = byPart.get(r.partition).put(r.offset, r);
            if (prev != null) {
                throw new CheckFailed("producer reported " + prev.name() + " and " + r.name()
                        + " both at partition " + r.partition + " offset " + r.offset);
            }
        }
        for (int p = 0; p < FINAL_PARTITIONS; p++) {
            TreeMap<Long, Rec> m = byPart.get(p);
            // With enough keys the default (murmur2) partitioner reaches every
            // partition, including the one added by createPartitions.
            check(!m.isEmpty() || sent.size() < 40 * FINAL_PARTITIONS, "no record was produced to partition " + p);
            if (m.isEmpty()) continue;
            // The topic is fresh and only this program writes to it: offsets must be 0..n-1.
            check(m.firstKey() == 0 && m.lastKey() == m.size() - 1, "partition " + p + ": producer offsets span "
                    + m.firstKey() + ".." + m.lastKey() + " for " + m.size() + " records");
        }

        // ---------------------------------------------------------- consume
        Properties cp = new Properties();
        cp.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        cp.put(ConsumerConfig.CLIENT_ID_CONFIG, "vltava-compat-java-consumer");
        cp.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        cp.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        cp.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false"); // no group.id: no commits
        int got = 0;
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(cp)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (int p = 0; p < FINAL_PARTITIONS; p++) tps.add(new TopicPartition(topic, p));
            Duration callTimeout = Duration.ofMillis(Math.min(30_000, remainingMs()));

            // ListOffsets: earliest / latest
            Map<TopicPartition, Long> begin = consumer.beginningOffsets(tps, callTimeout);
            Map<TopicPartition, Long> end = consumer.endOffsets(tps, callTimeout);
            for (TopicPartition tp : tps) {
                long n = byPart.get(tp.partition()).size();
                check(Long.valueOf(0).equals(begin.get(tp)), "beginningOffsets " + tp + " = " + begin.get(tp) + ", expected 0");
                check(Long.valueOf(n).equals(end.get(tp)), "endOffsets " + tp + " = " + end.get(tp) + ", expected " + n);
            }
            log("beginningOffsets " + begin + ", endOffsets " + end);

            // ListOffsets by timestamp: the earliest offset whose timestamp is >= T
            // (timestamps are not monotonic within a partition: codecs overlap in time).
            long t = baseTs + (long) (records / 2) * timestampStep(records);
            Map<TopicPartition, Long> query = new HashMap<>();
            for (TopicPartition tp : tps) query.put(tp, t);
            Map<TopicPartition, OffsetAndTimestamp> oft = consumer.offsetsForTimes(query, callTimeout);
            for (TopicPartition tp : tps) {
                Rec want = null;
                for (Rec r : byPart.get(tp.partition()).values()) {
                    if (r.timestamp >= t) {
                        want = r;
                        break;
                    }
                }
                OffsetAndTimestamp g = oft.get(tp);
                if (want == null) {
                    check(g == null, "offsetsForTimes(" + tp + ", " + t + ") = " + g + ", expected none");
                } else {
                    check(g != null, "offsetsForTimes(" + tp + ", " + t + ") = none, expected offset " + want.offset);
                    check(g.offset() == want.offset && g.timestamp() == want.timestamp, "offsetsForTimes(" + tp + ", "
                            + t + ") = " + g + ", expected offset " + want.offset + " timestamp " + want.timestamp);
                }
            }
            // A timestamp after every record: no offset.
            long future = System.currentTimeMillis() + 3_600_000L;
            for (TopicPartition tp : tps) query.put(tp, future);
            Map<TopicPartition, OffsetAndTimestamp> none = consumer.offsetsForTimes(query, callTimeout);
            for (TopicPartition tp : tps) {
                check(none.get(tp) == null, "offsetsForTimes(" + tp + ", now+1h) = " + none.get(tp) + ", expected none");
            }
            log("offsetsForTimes(" + t + ") " + oft);

            // Fetch everything from the beginning.
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            Map<Integer, Long> nextOffset = new HashMap<>();
            for (int p = 0; p < FINAL_PARTITIONS; p++) nextOffset.put(p, 0L);
            Set<String> seen = new HashSet<>();
            int emptyPolls = 0;
            while (got < sent.size()) {
                ConsumerRecords<byte[], byte[]> batch = consumer.poll(Duration.ofMillis(Math.min(1000, remainingMs())));
                if (batch.isEmpty()) {
                    emptyPolls++;
                    if (System.nanoTime() > deadlineNanos - 2_000_000_000L) {
                        throw new CheckFailed("consumed only " + got + " of " + sent.size() + " records; positions "
                                + nextOffset + ", expected " + end);
                    }
                    continue;
                }
                for (ConsumerRecord<byte[], byte[]> cr : batch) {
                    int p = cr.partition();
                    String where = "partition " + p + " offset " + cr.offset();
                    check(p >= 0 && p < FINAL_PARTITIONS, "record from unexpected " + where);
                    check(cr.offset() == nextOffset.get(p), "partition " + p + ": got offset " + cr.offset()
                            + " after " + (nextOffset.get(p) - 1) + " (expected " + nextOffset.get(p) + ")");
                    nextOffset.put(p, cr.offset() + 1);
                    Rec want = byPart.get(p).get(cr.offset());
                    check(want != null, "unexpected record at " + where + ": key " + show(cr.key()));
                    String k = new String(cr.key() == null ? new byte[0] : cr.key(), StandardCharsets.UTF_8);
                    check(Arrays.equals(want.key, cr.key()), where + ": key " + show(cr.key()) + ", the producer put "
                            + want.name() + " there");
                    check(seen.add(k), where + ": duplicate record " + k);
                    check(Arrays.equals(want.value, cr.value()), where + " (" + k + ", " + want.codec + "): value "
                            + show(cr.value()) + ", sent " + show(want.value));
                    check(sameHeaders(want.headers, cr.headers().toArray()), where + " (" + k + "): headers "
                            + showHeaders(cr.headers()) + ", sent " + showHeaders(want.headers));
                    check(cr.timestampType() == TimestampType.CREATE_TIME, where + " (" + k + "): timestamp type "
                            + cr.timestampType());
                    check(cr.timestamp() == want.timestamp, where + " (" + k + "): timestamp " + cr.timestamp()
                            + ", sent " + want.timestamp);
                    got++;
                }
            }
            for (TopicPartition tp : tps) {
                long n = byPart.get(tp.partition()).size();
                check(nextOffset.get(tp.partition()) == n, tp + ": consumed up to " + nextOffset.get(tp.partition())
                        + ", expected " + n);
                long pos = consumer.position(tp, callTimeout);
                check(pos == n, "position(" + tp + ") = " + pos + " after reading everything, expected " + n);
            }
            log("consumed " + got + " records (" + emptyPolls + " empty polls)");
        }
        check(got == sent.size(), "consumed " + got + " records, sent " + sent.size());
        return got;
    }

    static void checkTopic(Admin admin, String topic, int partitions, Node node) {
        Map<String, TopicDescription> m = await(admin.describeTopics(List.of(topic)).allTopicNames(),
                "describeTopics(" + topic + ")");
        TopicDescription td = m.get(topic);
        check(td != null, "describeTopics: no description for " + topic);
        check(!td.isInternal(), "describeTopics: " + topic + " reported internal");
        check(td.partitions().size() == partitions,
                "describeTopics: " + td.partitions().size() + " partitions, expected " + partitions + ": " + td);
        for (int i = 0; i < partitions; i++) {
            TopicPartitionInfo pi = td.partitions().get(i);
            check(pi.partition() == i, "describeTopics: partition list out of order: " + td.partitions());
            check(pi.leader() != null && pi.leader().id() == node.id(),
                    "describeTopics: partition " + i + " leader " + pi.leader() + ", expected " + node);
            check(pi.replicas().size() == 1 && pi.isr().size() == 1,
                    "describeTopics: partition " + i + " replicas " + pi.replicas() + " isr " + pi.isr());
        }
        log("describeTopics: " + td.partitions().size() + " partitions, topic id " + td.topicId());
    }
}

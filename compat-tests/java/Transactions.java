// Transactions with the official Java client (kafka-clients 4.1), driven by compat-tests/transactions.rs.
//
//   java -cp "$(compat-tests/java/classpath.sh)" compat-tests/java/Transactions.java --bootstrap HOST:PORT \
//       --mode read-committed|fence|transform [options]
//
// The topics exist already (the Rust test creates them).
//
// --mode read-committed --topic T (2 partitions): a transactional producer interleaves committed and aborted
//   transactions with the records of a non-transactional (default, idempotent) producer, then leaves a
//   transaction open and writes a non-transactional record after it. A read_committed consumer (assign, from
//   the beginning) gets exactly the committed and non-transactional records up to the open transaction and,
//   once it commits, the rest; endOffsets (ListOffsets with the consumer's isolation level) first stops at the
//   open transaction (the last stable offset), then reaches the end, and position() lands on it after the
//   read (past the commit marker). A read_uncommitted consumer gets everything, aborted records included.
//
// --mode fence --topic T: two producers with one transactional.id; the older one's open transaction is
//   aborted when the newer one initialises, and its commitTransaction() fails with ProducerFencedException.
//   read_committed sees only the newer producer's records.
//
// --mode crash --topic T [--wait-ms MS]: a committed, an aborted and an open transaction on partition 0; prints
//   "open" and waits MS (the test kills the broker -9 and restarts it meanwhile), then commits the open one,
//   runs one more and reads read_committed: exactly the committed records.
//
// --mode transform --txn-id ID --group G --input I --output O [--stall-after K]: consume-transform-produce.
//   A read_committed consumer of group G (assign, no subscription) reads I from the group's committed
//   offsets; each poll's records go to O as "out-<value>" (same partition) in one transaction together with
//   the consumer's positions (sendOffsetsToTransaction with the consumer's group metadata). Prints
//   "committed <n> <records>" after each commit. With --stall-after K the K+1-th transaction stops after
//   sendOffsetsToTransaction, before its commit: prints "stalled" and sleeps until killed. Ends when the
//   positions reach I's end offsets and prints "done <records>".
//
// Exit 0 on success, 1 on a mismatch or client error, 2 on bad usage, 3 when the time bound is hit.

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.Future;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class Transactions {
    static String bootstrap;
    static long deadline;

    static void fail(String msg) {
        System.err.println("Transactions: FAILED: " + msg);
        System.err.flush();
        Runtime.getRuntime().halt(1);
    }

    static KafkaProducer<String, String> producer(String txnId) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("linger.ms", "2");
        p.put("key.serializer", StringSerializer.class.getName());
        p.put("value.serializer", StringSerializer.class.getName());
        if (txnId != null) p.put("transactional.id", txnId);
        return new KafkaProducer<>(p);
    }

    static KafkaConsumer<String, String> consumer(String group, String isolation) {
        return consumer(group, isolation, 500);
    }

    static KafkaConsumer<String, String> consumer(String group, String isolation, int maxPollRecords) {
        Properties p = new Properties();
        p.put("max.poll.records", Integer.toString(maxPollRecords));
        p.put("bootstrap.servers", bootstrap);
        if (group != null) p.put("group.id", group);
        p.put("enable.auto.commit", "false");
        p.put("auto.offset.reset", "earliest");
        p.put("isolation.level", isolation);
        p.put("fetch.max.wait.ms", "100");
        p.put("key.deserializer", StringDeserializer.class.getName());
        p.put("value.deserializer", StringDeserializer.class.getName());
        return new KafkaConsumer<>(p);
    }

    static List<TopicPartition> partitions(KafkaConsumer<String, String> c, String topic) {
        List<TopicPartition> tps = new ArrayList<>();
        for (PartitionInfo pi : c.partitionsFor(topic, Duration.ofSeconds(30))) tps.add(new TopicPartition(topic, pi.partition()));
        return tps;
    }

    /** Sends value to topic/partition and remembers its future under the value. */
    static void send(KafkaProducer<String, String> p, Map<String, Future<RecordMetadata>> sent, String topic, int partition, String value) {
        sent.put(value, p.send(new ProducerRecord<>(topic, partition, value, value)));
    }

    static Map<String, String> acks(Map<String, Future<RecordMetadata>> sent) throws Exception {
        Map<String, String> out = new HashMap<>();
        for (Map.Entry<String, Future<RecordMetadata>> e : sent.entrySet()) {
            RecordMetadata md = e.getValue().get();
            out.put(e.getKey(), md.partition() + "/" + md.offset());
        }
        return out;
    }

    /** Polls until every value of want (value -> "partition/offset") arrived, then 1.5 s more; got must then
     *  hold exactly want's records, at the offsets the producer was told, in order per partition. */
    static void readExactly(KafkaConsumer<String, String> c, Map<String, String> want, List<ConsumerRecord<String, String>> got, String label) {
        Set<String> seen = new HashSet<>();
        for (ConsumerRecord<String, String> r : got) seen.add(r.value());
        while (!seen.containsAll(want.keySet())) {
            if (System.currentTimeMillis() > deadline) {
                Set<String> missing = new HashSet<>(want.keySet());
                missing.removeAll(seen);
                fail(label + ": missing " + missing + " (got " + got.size() + ")");
            }
            for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                got.add(r);
                seen.add(r.value());
            }
        }
        long quiet = System.currentTimeMillis() + 1500;
        while (System.currentTimeMillis() < quiet) for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) got.add(r);
        Set<String> values = new HashSet<>();
        Map<Integer, Long> last = new HashMap<>();
        for (ConsumerRecord<String, String> r : got) {
            String at = r.partition() + "/" + r.offset();
            if (!want.containsKey(r.value())) fail(label + ": record " + r.value() + " at " + at + " must stay invisible");
            if (!values.add(r.value())) fail(label + ": " + r.value() + " read twice");
            if (!want.get(r.value()).equals(at)) fail(label + ": " + r.value() + " at " + at + ", the producer was told " + want.get(r.value()));
            Long prev = last.put(r.partition(), r.offset());
            if (prev != null && prev >= r.offset()) fail(label + ": partition " + r.partition() + " offset " + r.offset() + " after " + prev);
        }
    }

    static void readCommitted(String topic) throws Exception {
        Map<String, Future<RecordMetadata>> sent = new LinkedHashMap<>();
        List<String> committed = new ArrayList<>();
        List<String> aborted = new ArrayList<>();
        KafkaProducer<String, String> txn = producer("java-txn");
        KafkaProducer<String, String> plain = producer(null);
        txn.initTransactions();
        for (int r = 0; r < 3; r++) {
            txn.beginTransaction();
            for (int i = 0; i < 10; i++) { send(txn, sent, topic, i % 2, "c" + r + "-" + i); committed.add("c" + r + "-" + i); }
            txn.commitTransaction();
            for (int i = 0; i < 4; i++) { send(plain, sent, topic, i % 2, "n" + r + "-" + i); committed.add("n" + r + "-" + i); }
            plain.flush();
            txn.beginTransaction();
            for (int i = 0; i < 10; i++) { send(txn, sent, topic, i % 2, "a" + r + "-" + i); aborted.add("a" + r + "-" + i); }
            // Flushed first, so the aborted records are in the log (read_uncommitted must see them).
            txn.flush();
            txn.abortTransaction();
        }
        txn.beginTransaction();
        for (int i = 0; i < 6; i++) send(txn, sent, topic, i % 2, "o-" + i);
        txn.flush();
        for (int i = 0; i < 2; i++) send(plain, sent, topic, i, "late-" + i);
        plain.flush();
        Map<String, String> acks = acks(sent);
        Map<String, String> want = new HashMap<>();
        for (String v : committed) want.put(v, acks.get(v));

        KafkaConsumer<String, String> rc = consumer(null, "read_committed");
        List<TopicPartition> tps = partitions(rc, topic);
        rc.assign(tps);
        rc.seekToBeginning(tps);
        // The last stable offset: each partition's first record of the open transaction.
        Map<TopicPartition, Long> lso = rc.endOffsets(tps, Duration.ofSeconds(30));
        for (TopicPartition tp : tps) {
            String first = acks.get("o-" + tp.partition());
            long want0 = Long.parseLong(first.split("/")[1]);
            if (lso.get(tp) != want0) fail("read_committed endOffsets " + tp + " = " + lso.get(tp) + " with a transaction open from " + want0);
        }
        List<ConsumerRecord<String, String>> got = new ArrayList<>();
        readExactly(rc, want, got, "read_committed before the last commit");
        txn.commitTransaction();
        for (int i = 0; i < 6; i++) want.put("o-" + i, acks.get("o-" + i));
        for (int i = 0; i < 2; i++) want.put("late-" + i, acks.get("late-" + i));
        readExactly(rc, want, got, "read_committed after the last commit");
        Map<TopicPartition, Long> end = rc.endOffsets(tps, Duration.ofSeconds(30));
        try (KafkaConsumer<String, String> ru = consumer(null, "read_uncommitted")) {
            Map<TopicPartition, Long> hw = ru.endOffsets(tps, Duration.ofSeconds(30));
            if (!hw.equals(end)) fail("read_committed endOffsets " + end + " != high watermarks " + hw + " with no transaction open");
            for (TopicPartition tp : tps) {
                // The last record of each partition is late-<p>; the commit marker follows it.
                long lastOffset = Long.parseLong(acks.get("late-" + tp.partition()).split("/")[1]);
                if (hw.get(tp) != lastOffset + 2) fail(tp + ": high watermark " + hw.get(tp) + ", want " + (lastOffset + 2) + " (last record and the commit marker)");
                long pos = rc.position(tp, Duration.ofSeconds(30));
                if (pos != hw.get(tp)) fail(tp + ": read_committed position " + pos + " after the read, want " + hw.get(tp));
            }
            ru.assign(tps);
            ru.seekToBeginning(tps);
            List<ConsumerRecord<String, String>> every = new ArrayList<>();
            readExactly(ru, acks, every, "read_uncommitted");
        }
        rc.close();
        txn.close();
        plain.close();
        System.out.println("Transactions: read_committed ok (" + want.size() + " committed, " + aborted.size() + " aborted records)");
    }

    static void fence(String topic) throws Exception {
        Map<String, Future<RecordMetadata>> sentOld = new LinkedHashMap<>();
        Map<String, Future<RecordMetadata>> sentNew = new LinkedHashMap<>();
        KafkaProducer<String, String> old = producer("java-zombie");
        old.initTransactions();
        old.beginTransaction();
        for (int i = 0; i < 4; i++) send(old, sentOld, topic, 0, "zombie-" + i);
        old.flush();
        acks(sentOld);
        KafkaProducer<String, String> young = producer("java-zombie");
        young.initTransactions();
        young.beginTransaction();
        for (int i = 0; i < 4; i++) send(young, sentNew, topic, 0, "young-" + i);
        young.commitTransaction();
        try {
            old.commitTransaction();
            fail("the fenced producer committed");
        } catch (ProducerFencedException e) {
            System.out.println("old producer: " + e);
        } catch (Exception e) {
            fail("the fenced producer's commit failed with " + e + ", want ProducerFencedException");
        }
        old.close(Duration.ZERO);
        Map<String, String> want = acks(sentNew);
        try (KafkaConsumer<String, String> rc = consumer(null, "read_committed")) {
            List<TopicPartition> tps = partitions(rc, topic);
            rc.assign(tps);
            rc.seekToBeginning(tps);
            readExactly(rc, want, new ArrayList<>(), "read_committed after fencing");
        }
        young.close();
        System.out.println("Transactions: fence ok");
    }

    static void crash(String topic, long waitMs) throws Exception {
        Map<String, Future<RecordMetadata>> sent = new LinkedHashMap<>();
        List<String> visible = new ArrayList<>();
        KafkaProducer<String, String> p = producer("java-crash");
        p.initTransactions();
        p.beginTransaction();
        for (int i = 0; i < 5; i++) { send(p, sent, topic, 0, "c" + i); visible.add("c" + i); }
        p.commitTransaction();
        p.beginTransaction();
        for (int i = 0; i < 5; i++) send(p, sent, topic, 0, "a" + i);
        p.flush();
        p.abortTransaction();
        p.beginTransaction();
        for (int i = 0; i < 5; i++) { send(p, sent, topic, 0, "o" + i); visible.add("o" + i); }
        p.flush();
        System.out.println("open");
        System.out.flush();
        // The test kills the broker (-9) and restarts it meanwhile.
        Thread.sleep(waitMs);
        p.commitTransaction();
        p.beginTransaction();
        for (int i = 0; i < 3; i++) { send(p, sent, topic, 0, "t" + i); visible.add("t" + i); }
        p.commitTransaction();
        Map<String, String> acks = acks(sent);
        Map<String, String> want = new HashMap<>();
        for (String v : visible) want.put(v, acks.get(v));
        try (KafkaConsumer<String, String> rc = consumer(null, "read_committed")) {
            List<TopicPartition> tps = partitions(rc, topic);
            rc.assign(tps);
            rc.seekToBeginning(tps);
            readExactly(rc, want, new ArrayList<>(), "read_committed after the broker restart");
        }
        p.close();
        System.out.println("Transactions: crash ok");
    }

    static void transform(String txnId, String group, String input, String output, int stallAfter) throws Exception {
        KafkaConsumer<String, String> c = consumer(group, "read_committed", 20);
        List<TopicPartition> tps = partitions(c, input);
        c.assign(tps);
        Map<TopicPartition, Long> end = c.endOffsets(tps, Duration.ofSeconds(30));
        KafkaProducer<String, String> p = producer(txnId);
        p.initTransactions();
        int commits = 0;
        int records = 0;
        while (true) {
            if (System.currentTimeMillis() > deadline) fail("did not reach the end of the input");
            List<ConsumerRecord<String, String>> batch = new ArrayList<>();
            for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) batch.add(r);
            if (batch.isEmpty()) {
                boolean doneAll = true;
                for (TopicPartition tp : tps) if (c.position(tp) < end.get(tp)) doneAll = false;
                if (doneAll) break;
                continue;
            }
            p.beginTransaction();
            Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
            for (ConsumerRecord<String, String> r : batch) {
                p.send(new ProducerRecord<>(output, r.partition(), r.key(), "out-" + r.value()));
                offsets.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
            }
            p.flush();
            p.sendOffsetsToTransaction(offsets, c.groupMetadata());
            if (commits == stallAfter) {
                System.out.println("stalled");
                System.out.flush();
                Thread.sleep(Long.MAX_VALUE);
            }
            p.commitTransaction();
            commits++;
            records += batch.size();
            System.out.println("committed " + commits + " " + records);
            System.out.flush();
        }
        System.out.println("done " + records);
        p.close();
        c.close();
    }

    public static void main(String[] args) throws Exception {
        Map<String, String> opt = new HashMap<>();
        for (int i = 0; i + 1 < args.length; i += 2) opt.put(args[i], args[i + 1]);
        bootstrap = opt.get("--bootstrap");
        String mode = opt.getOrDefault("--mode", "");
        long timeout = Long.parseLong(opt.getOrDefault("--timeout", "60"));
        if (bootstrap == null) { System.err.println("usage: --bootstrap HOST:PORT --mode ..."); System.exit(2); }
        deadline = System.currentTimeMillis() + timeout * 1000;
        // Bounds the stalled process too, if nobody kills it.
        Thread watchdog = new Thread(() -> {
            try { Thread.sleep((timeout + 5) * 1000); } catch (InterruptedException e) { return; }
            System.err.println("Transactions: FAILED: time bound of " + timeout + " s hit");
            Runtime.getRuntime().halt(3);
        });
        watchdog.setDaemon(true);
        watchdog.start();
        try {
            switch (mode) {
                case "read-committed": readCommitted(opt.get("--topic")); break;
                case "fence": fence(opt.get("--topic")); break;
                case "crash": crash(opt.get("--topic"), Long.parseLong(opt.getOrDefault("--wait-ms", "3000"))); break;
                case "transform":
                    transform(opt.get("--txn-id"), opt.get("--group"), opt.get("--input"), opt.get("--output"),
                        Integer.parseInt(opt.getOrDefault("--stall-after", "-1")));
                    break;
                default: System.err.println("unknown --mode " + mode); System.exit(2);
            }
        } catch (Exception e) {
            e.printStackTrace();
            fail(e.toString());
        }
        System.exit(0);
    }
}

// Consumer group with the official Java client (kafka-clients 4.1): subscribe + commitSync + resume, with
// group.protocol=classic (the default; Java defaults: 45 s session timeout, range + cooperative-sticky
// assignors) or consumer (KIP-848: the broker assigns through ConsumerGroupHeartbeat and decides the session
// timeout).
//
//   java -cp "$(compat-tests/java/classpath.sh)" compat-tests/java/GroupCommit.java --bootstrap HOST:PORT \
//       [--protocol classic|consumer]
//
// Produces 40 records to a 2-partition topic (the default, idempotent producer). Consumer A subscribes,
// reads until it has 20 records, commits the next offset of each partition it read with commitSync and a
// metadata string, and closes. Consumer B in the same group reads the remaining 20 - none twice, none
// missing - and committed() returns A's offsets and metadata. Then Admin.describeConsumerGroups sees a group
// of the protocol's type with no members. Exit 0 on success, 1 on any mismatch or client error.

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class GroupCommit {
    static String protocol = "classic";
    static String TOPIC = "java-group-topic";
    static String GROUP = "java-group";

    static void fail(String msg) {
        System.err.println("GroupCommit: FAIL: " + msg);
        System.exit(1);
    }

    static KafkaConsumer<String, String> consumer(String bootstrap) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("group.id", GROUP);
        p.put("group.protocol", protocol);
        p.put("enable.auto.commit", "false");
        p.put("auto.offset.reset", "earliest");
        p.put("key.deserializer", StringDeserializer.class.getName());
        p.put("value.deserializer", StringDeserializer.class.getName());
        KafkaConsumer<String, String> c = new KafkaConsumer<>(p);
        c.subscribe(Collections.singletonList(TOPIC));
        return c;
    }

    static List<ConsumerRecord<String, String>> read(KafkaConsumer<String, String> c, int n, long deadline) {
        List<ConsumerRecord<String, String>> got = new ArrayList<>();
        while (got.size() < n) {
            if (System.currentTimeMillis() > deadline) fail("read only " + got.size() + " of " + n);
            for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) got.add(r);
        }
        return got;
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = null;
        for (int i = 0; i + 1 < args.length; i++) {
            if (args[i].equals("--bootstrap")) bootstrap = args[i + 1];
            if (args[i].equals("--protocol")) protocol = args[i + 1];
        }
        if (bootstrap == null || !(protocol.equals("classic") || protocol.equals("consumer"))) {
            System.err.println("usage: --bootstrap HOST:PORT [--protocol classic|consumer]");
            System.exit(2);
        }
        TOPIC = "java-" + protocol + "-topic";
        GROUP = "java-" + protocol + "-group";
        long deadline = System.currentTimeMillis() + 150_000;

        Properties ap = new Properties();
        ap.put("bootstrap.servers", bootstrap);
        try (Admin admin = Admin.create(ap)) {
            admin.createTopics(Collections.singletonList(new NewTopic(TOPIC, 2, (short) 1))).all().get();
        }
        Properties pp = new Properties();
        pp.put("bootstrap.servers", bootstrap);
        pp.put("acks", "all");
        pp.put("key.serializer", StringSerializer.class.getName());
        pp.put("value.serializer", StringSerializer.class.getName());
        try (KafkaProducer<String, String> prod = new KafkaProducer<>(pp)) {
            for (int i = 0; i < 40; i++) prod.send(new ProducerRecord<>(TOPIC, i % 2, null, "v" + i)).get();
        }

        Map<TopicPartition, OffsetAndMetadata> commit = new HashMap<>();
        Set<String> seen = new HashSet<>();
        int total = 0;
        try (KafkaConsumer<String, String> a = consumer(bootstrap)) {
            List<ConsumerRecord<String, String>> first = read(a, 20, deadline);
            for (ConsumerRecord<String, String> r : first) {
                TopicPartition tp = new TopicPartition(r.topic(), r.partition());
                long next = r.offset() + 1;
                OffsetAndMetadata old = commit.get(tp);
                if (old == null || old.offset() < next) commit.put(tp, new OffsetAndMetadata(next, "java-meta-" + r.partition()));
                seen.add(r.partition() + "@" + r.offset());
            }
            total += first.size();
            // Records past the 20th of this poll are not committed: B reads them again, so count only
            // what A committed.
            a.commitSync(commit);
        }
        int committedCount = 0;
        for (OffsetAndMetadata om : commit.values()) committedCount += (int) om.offset();
        Set<String> committedSeen = new HashSet<>();
        for (String s : seen) {
            String[] pa = s.split("@");
            OffsetAndMetadata om = commit.get(new TopicPartition(TOPIC, Integer.parseInt(pa[0])));
            if (om != null && Long.parseLong(pa[1]) < om.offset()) committedSeen.add(s);
        }
        try (KafkaConsumer<String, String> b = consumer(bootstrap)) {
            List<ConsumerRecord<String, String>> second = read(b, 40 - committedCount, deadline);
            for (ConsumerRecord<String, String> r : second) {
                String key = r.partition() + "@" + r.offset();
                if (committedSeen.contains(key)) fail("record " + key + " read again after commitSync");
                committedSeen.add(key);
            }
            if (committedSeen.size() != 40) fail("read " + committedSeen.size() + " distinct records, want 40");
            Map<TopicPartition, OffsetAndMetadata> back = b.committed(commit.keySet(), Duration.ofSeconds(20));
            for (Map.Entry<TopicPartition, OffsetAndMetadata> e : commit.entrySet()) {
                OffsetAndMetadata got = back.get(e.getKey());
                if (got == null || got.offset() != e.getValue().offset() || !got.metadata().equals(e.getValue().metadata()))
                    fail("committed " + e.getKey() + " = " + got + ", want " + e.getValue());
            }
        }
        // The admin client describes the group (ConsumerGroupDescribe first, DescribeGroups for a classic
        // group): the protocol's type, now empty.
        try (Admin admin = Admin.create(ap)) {
            org.apache.kafka.clients.admin.ConsumerGroupDescription d =
                admin.describeConsumerGroups(Collections.singletonList(GROUP)).all().get().get(GROUP);
            org.apache.kafka.common.GroupType want = protocol.equals("consumer")
                ? org.apache.kafka.common.GroupType.CONSUMER : org.apache.kafka.common.GroupType.CLASSIC;
            if (d.type() != want) fail("group type " + d.type() + ", want " + want);
            if (!d.members().isEmpty()) fail("members after close: " + d.members());
        }
        System.out.println("GroupCommit: OK (" + protocol + ")");
    }
}

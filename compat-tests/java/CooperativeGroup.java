// Incremental cooperative rebalancing with the official Java client (kafka-clients 4.1, group.protocol=classic,
// CooperativeStickyAssignor only):
//
//   java -cp "$(compat-tests/java/classpath.sh)" compat-tests/java/CooperativeGroup.java --bootstrap HOST:PORT
//
// Three consumers join a 6-partition topic one by one, then the last one leaves (close: LeaveGroup). Each runs
// its poll loop on its own thread with a ConsumerRebalanceListener that records every onPartitionsRevoked /
// onPartitionsAssigned / onPartitionsLost and commits synchronously on revocation. After each step the program
// checks that the members own disjoint sets covering all 6 partitions in the expected sizes (6, 3+3, 2+2+2,
// 3+3), that no member had a partition revoked that it still owns afterwards (cooperative: only moving
// partitions are revoked), and that nothing was lost; records produced after each step are read exactly once
// overall. Exit 0 on success, 1 on any mismatch or client error.

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicBoolean;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class CooperativeGroup {
    static final String TOPIC = "java-coop-topic";
    static final String GROUP = "java-coop";
    static final int PARTITIONS = 6;

    static void fail(String msg) {
        System.err.println("CooperativeGroup: FAIL: " + msg);
        System.exit(1);
    }

    /** One member: its poll thread, owned partitions, revocation log and records read. */
    static class Member {
        final String name;
        final Set<Integer> owned = ConcurrentHashMap.newKeySet();
        final List<Integer> revoked = new CopyOnWriteArrayList<>();
        final List<Integer> lost = new CopyOnWriteArrayList<>();
        final List<String> records = new CopyOnWriteArrayList<>();
        final List<String> errors = new CopyOnWriteArrayList<>();
        final AtomicBoolean stop = new AtomicBoolean();
        final Thread thread;

        Member(String bootstrap, String name) {
            this.name = name;
            thread = new Thread(() -> run(bootstrap));
            thread.start();
        }

        void run(String bootstrap) {
            Properties p = new Properties();
            p.put("bootstrap.servers", bootstrap);
            p.put("group.id", GROUP);
            p.put("client.id", name);
            p.put("enable.auto.commit", "false");
            p.put("auto.offset.reset", "earliest");
            p.put("session.timeout.ms", "10000");
            p.put("heartbeat.interval.ms", "300");
            p.put("partition.assignment.strategy", CooperativeStickyAssignor.class.getName());
            p.put("key.deserializer", StringDeserializer.class.getName());
            p.put("value.deserializer", StringDeserializer.class.getName());
            try (KafkaConsumer<String, String> c = new KafkaConsumer<>(p)) {
                c.subscribe(Collections.singletonList(TOPIC), new ConsumerRebalanceListener() {
                    public void onPartitionsRevoked(Collection<TopicPartition> parts) {
                        c.commitSync();
                        for (TopicPartition tp : parts) {
                            revoked.add(tp.partition());
                            owned.remove(tp.partition());
                        }
                    }

                    public void onPartitionsAssigned(Collection<TopicPartition> parts) {
                        for (TopicPartition tp : parts) owned.add(tp.partition());
                    }

                    public void onPartitionsLost(Collection<TopicPartition> parts) {
                        for (TopicPartition tp : parts) {
                            lost.add(tp.partition());
                            owned.remove(tp.partition());
                        }
                    }
                });
                while (!stop.get()) {
                    boolean any = false;
                    for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(50))) {
                        records.add(r.partition() + ":" + r.offset());
                        any = true;
                    }
                    if (any) c.commitSync();
                }
            } catch (Exception e) {
                errors.add(e.toString());
            }
        }

        void close() throws InterruptedException {
            stop.set(true);
            thread.join(30000);
        }
    }

    static boolean settled(List<Member> ms, int[] sizes) {
        Set<Integer> all = new TreeSet<>();
        int total = 0;
        List<Integer> got = new ArrayList<>();
        for (Member m : ms) {
            all.addAll(m.owned);
            total += m.owned.size();
            got.add(m.owned.size());
        }
        Collections.sort(got);
        List<Integer> want = new ArrayList<>();
        for (int s : sizes) want.add(s);
        return all.size() == PARTITIONS && total == PARTITIONS && got.equals(want);
    }

    static String describe(List<Member> ms) {
        StringBuilder b = new StringBuilder();
        for (Member m : ms) {
            b.append(m.name).append(" owns ").append(new TreeSet<>(m.owned)).append(" revoked ")
                .append(m.revoked).append("; ");
        }
        return b.toString();
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = null;
        for (int i = 0; i + 1 < args.length; i++) if (args[i].equals("--bootstrap")) bootstrap = args[i + 1];
        if (bootstrap == null) {
            System.err.println("usage: CooperativeGroup.java --bootstrap HOST:PORT");
            System.exit(2);
        }
        long deadline = System.currentTimeMillis() + 150_000;
        Properties ap = new Properties();
        ap.put("bootstrap.servers", bootstrap);
        try (Admin admin = Admin.create(ap)) {
            admin.createTopics(List.of(new NewTopic(TOPIC, PARTITIONS, (short) 1))).all().get();
        }
        Properties pp = new Properties();
        pp.put("bootstrap.servers", bootstrap);
        pp.put("key.serializer", StringSerializer.class.getName());
        pp.put("value.serializer", StringSerializer.class.getName());
        KafkaProducer<String, String> producer = new KafkaProducer<>(pp);

        List<Member> members = new ArrayList<>();
        List<Member> closed = new ArrayList<>();
        int[][] sizes = {{6}, {3, 3}, {2, 2, 2}, {3, 3}};
        int produced = 0;
        for (int step = 0; step < 4; step++) {
            Map<Member, Set<Integer>> before = new HashMap<>();
            Map<Member, Integer> marks = new HashMap<>();
            for (Member m : members) {
                before.put(m, new TreeSet<>(m.owned));
                marks.put(m, m.revoked.size());
            }
            if (step < 3) {
                members.add(new Member(bootstrap, "m" + step));
            } else {
                Member last = members.remove(members.size() - 1);
                last.close();
                closed.add(last);
            }
            while (!settled(members, sizes[step])) {
                if (System.currentTimeMillis() > deadline) fail("step " + step + ": " + describe(members));
                Thread.sleep(50);
            }
            Thread.sleep(1500); // a further cooperative round would show here
            if (!settled(members, sizes[step])) fail("step " + step + " unsettled: " + describe(members));
            for (Member m : before.keySet()) {
                Set<Integer> moved = new TreeSet<>(before.get(m));
                moved.removeAll(m.owned);
                Set<Integer> rev = new TreeSet<>(m.revoked.subList(marks.get(m), m.revoked.size()));
                if (!moved.containsAll(rev)) {
                    fail("step " + step + ": " + m.name + " had " + rev + " revoked but only " + moved
                        + " moved: " + describe(members));
                }
            }
            for (int i = 0; i < 10 * PARTITIONS; i++) {
                producer.send(new ProducerRecord<>(TOPIC, i % PARTITIONS, null, "s" + step + "-" + i));
            }
            producer.flush();
            produced += 10 * PARTITIONS;
            while (true) {
                int n = 0;
                for (Member m : members) n += m.records.size();
                for (Member m : closed) n += m.records.size();
                if (n >= produced) break;
                if (System.currentTimeMillis() > deadline) fail("read " + n + " of " + produced);
                Thread.sleep(50);
            }
            System.out.println("step " + step + ": " + describe(members));
        }
        Thread.sleep(300);
        Map<String, Integer> count = new HashMap<>();
        List<Member> everyone = new ArrayList<>(members);
        everyone.addAll(closed);
        for (Member m : everyone) {
            if (!m.errors.isEmpty()) fail(m.name + ": " + m.errors);
            if (!m.lost.isEmpty()) fail(m.name + " lost partitions " + m.lost);
            for (String r : m.records) count.merge(r, 1, Integer::sum);
        }
        if (count.size() != produced) fail("read " + count.size() + " distinct records of " + produced);
        for (Map.Entry<String, Integer> e : count.entrySet()) {
            if (e.getValue() != 1) fail("record " + e.getKey() + " read " + e.getValue() + " times");
        }
        for (Member m : members) m.close();
        producer.close();
        System.out.println("CooperativeGroup: ok, " + produced + " records read once, only moving partitions revoked");
    }
}

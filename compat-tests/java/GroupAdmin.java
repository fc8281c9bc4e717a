// Consumer group administration with the official Java Admin client (kafka-clients 4.1), as
// kafka-consumer-groups.sh uses it, against a group with a live classic-protocol Java consumer and then without.
//
//   java -cp "$(compat-tests/java/classpath.sh)" compat-tests/java/GroupAdmin.java --bootstrap HOST:PORT
//
// Produces 5 records to each of 2 partitions. A consumer (group.protocol=classic) subscribes, reads all 10 and
// commitSync()s, then stays in the group (its heartbeat thread keeps it a member) while the Admin checks:
// listConsumerGroups and listGroups(forConsumerGroups) show the group Stable and classic; describeConsumerGroups
// shows the member (client id, host, both partitions, range assignor); listConsumerGroupOffsets gives 5 and 5;
// alterConsumerGroupOffsets is refused (UnknownMemberIdException, as Kafka answers a commit without a member
// to a group with members); deleteConsumerGroupOffsets is refused per partition (GroupSubscribedToTopic);
// deleteConsumerGroups is refused (GroupNotEmpty). After the consumer closes the group is Empty, and alter,
// deleteConsumerGroupOffsets and deleteConsumerGroups succeed, each checked by reading back.
// Exit 0 on success, 1 on any mismatch or unexpected error.

import java.time.Duration;
import java.util.Collection;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.ConsumerGroupListing;
import org.apache.kafka.clients.admin.GroupListing;
import org.apache.kafka.clients.admin.ListGroupsOptions;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.GroupType;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.GroupIdNotFoundException;
import org.apache.kafka.common.errors.GroupNotEmptyException;
import org.apache.kafka.common.errors.GroupSubscribedToTopicException;
import org.apache.kafka.common.errors.UnknownMemberIdException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class GroupAdmin {
    static final String TOPIC = "java-admin-topic";
    static final String GROUP = "java-admin-group";
    static final TopicPartition P0 = new TopicPartition(TOPIC, 0);
    static final TopicPartition P1 = new TopicPartition(TOPIC, 1);

    static void fail(String msg) {
        System.err.println("GroupAdmin: FAIL: " + msg);
        System.exit(1);
    }

    static void check(boolean ok, String what) {
        if (!ok) fail(what);
        System.out.println("ok: " + what);
    }

    /** Runs `r`, expecting it to fail with `want` as the cause. */
    static void expectFailure(String what, Class<? extends Throwable> want, Fallible r) throws Exception {
        try {
            r.run();
        } catch (ExecutionException e) {
            check(want.isInstance(e.getCause()), what + " fails with " + want.getSimpleName() + " (got " + e.getCause() + ")");
            return;
        }
        fail(what + " succeeded, expected " + want.getSimpleName());
    }

    interface Fallible { void run() throws Exception; }

    static Map<TopicPartition, Long> offsets(Admin admin) throws Exception {
        Map<TopicPartition, OffsetAndMetadata> got =
            admin.listConsumerGroupOffsets(GROUP).partitionsToOffsetAndMetadata().get();
        Map<TopicPartition, Long> out = new HashMap<>();
        for (Map.Entry<TopicPartition, OffsetAndMetadata> e : got.entrySet())
            if (e.getValue() != null) out.put(e.getKey(), e.getValue().offset());
        return out;
    }

    static ConsumerGroupDescription describe(Admin admin) throws Exception {
        return admin.describeConsumerGroups(Collections.singletonList(GROUP)).describedGroups().get(GROUP).get();
    }

    @SuppressWarnings("deprecation")
    static Collection<ConsumerGroupListing> listConsumerGroups(Admin admin) throws Exception {
        return admin.listConsumerGroups().all().get();
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = null;
        for (int i = 0; i + 1 < args.length; i++) if (args[i].equals("--bootstrap")) bootstrap = args[i + 1];
        if (bootstrap == null) { System.err.println("usage: --bootstrap HOST:PORT"); System.exit(2); }
        long deadline = System.currentTimeMillis() + 150_000;

        Properties ap = new Properties();
        ap.put("bootstrap.servers", bootstrap);
        try (Admin admin = Admin.create(ap)) {
            admin.createTopics(Collections.singletonList(new NewTopic(TOPIC, 2, (short) 1))).all().get();
            Properties pp = new Properties();
            pp.put("bootstrap.servers", bootstrap);
            pp.put("acks", "all");
            pp.put("key.serializer", StringSerializer.class.getName());
            pp.put("value.serializer", StringSerializer.class.getName());
            try (KafkaProducer<String, String> p = new KafkaProducer<>(pp)) {
                for (int i = 0; i < 10; i++) p.send(new ProducerRecord<>(TOPIC, i % 2, null, "v" + i)).get();
            }

            Properties cp = new Properties();
            cp.put("bootstrap.servers", bootstrap);
            cp.put("group.id", GROUP);
            cp.put("client.id", "java-admin-client");
            cp.put("group.protocol", "classic");
            cp.put("enable.auto.commit", "false");
            cp.put("auto.offset.reset", "earliest");
            cp.put("key.deserializer", StringDeserializer.class.getName());
            cp.put("value.deserializer", StringDeserializer.class.getName());
            KafkaConsumer<String, String> c = new KafkaConsumer<>(cp);
            c.subscribe(Collections.singletonList(TOPIC));
            int n = 0;
            while (n < 10) {
                if (System.currentTimeMillis() > deadline) fail("read only " + n + " of 10");
                n += c.poll(Duration.ofMillis(200)).count();
            }
            c.commitSync();

            // --- with a live member ---
            ConsumerGroupListing listing = null;
            for (ConsumerGroupListing l : listConsumerGroups(admin)) if (l.groupId().equals(GROUP)) listing = l;
            check(listing != null, "listConsumerGroups lists the group");
            check(listing.groupState().equals(java.util.Optional.of(GroupState.STABLE)), "listConsumerGroups: Stable (" + listing + ")");
            check(listing.type().equals(java.util.Optional.of(GroupType.CLASSIC)), "listConsumerGroups: classic");
            check(!listing.isSimpleConsumerGroup(), "listConsumerGroups: not a simple group");
            GroupListing gl = null;
            for (GroupListing l : admin.listGroups(ListGroupsOptions.forConsumerGroups()).all().get())
                if (l.groupId().equals(GROUP)) gl = l;
            check(gl != null && gl.protocol().equals("consumer") && gl.groupState().equals(java.util.Optional.of(GroupState.STABLE)),
                "listGroups(forConsumerGroups) lists the group: " + gl);
            boolean inEmpty = false;
            for (GroupListing l : admin.listGroups(ListGroupsOptions.forConsumerGroups().inGroupStates(Set.of(GroupState.EMPTY))).all().get())
                if (l.groupId().equals(GROUP)) inEmpty = true;
            check(!inEmpty, "listGroups filtered by state Empty leaves the Stable group out");

            ConsumerGroupDescription d = describe(admin);
            check(d.groupState() == GroupState.STABLE, "describeConsumerGroups: Stable (" + d.groupState() + ")");
            check(d.type() == GroupType.CLASSIC, "describeConsumerGroups: classic (" + d.type() + ")");
            check(d.partitionAssignor().equals("range"), "describeConsumerGroups: range assignor (" + d.partitionAssignor() + ")");
            check(d.coordinator() != null && d.coordinator().id() == 1, "describeConsumerGroups: coordinator is node 1");
            check(d.members().size() == 1, "describeConsumerGroups: one member");
            MemberDescription m = d.members().iterator().next();
            check(m.clientId().equals("java-admin-client") && m.consumerId().startsWith("java-admin-client-"),
                "member ids: " + m.consumerId() + " / " + m.clientId());
            check(!m.host().isEmpty(), "member host: " + m.host());
            check(m.assignment().topicPartitions().equals(Set.of(P0, P1)), "member assignment: " + m.assignment());

            check(offsets(admin).equals(Map.of(P0, 5L, P1, 5L)), "listConsumerGroupOffsets: 5 and 5");

            expectFailure("alterConsumerGroupOffsets on an active group", UnknownMemberIdException.class,
                () -> admin.alterConsumerGroupOffsets(GROUP, Map.of(P0, new OffsetAndMetadata(1))).all().get());
            expectFailure("deleteConsumerGroupOffsets of a subscribed topic", GroupSubscribedToTopicException.class,
                () -> admin.deleteConsumerGroupOffsets(GROUP, Set.of(P0)).all().get());
            expectFailure("deleteConsumerGroups of an active group", GroupNotEmptyException.class,
                () -> admin.deleteConsumerGroups(Collections.singletonList(GROUP)).all().get());
            check(offsets(admin).equals(Map.of(P0, 5L, P1, 5L)), "offsets unchanged by the refused calls");

            // --- without members ---
            c.close();
            while (describe(admin).groupState() != GroupState.EMPTY) {
                if (System.currentTimeMillis() > deadline) fail("group never became Empty");
                Thread.sleep(100);
            }
            d = describe(admin);
            check(d.members().isEmpty(), "describeConsumerGroups after close: Empty, no members");

            admin.alterConsumerGroupOffsets(GROUP, Map.of(P0, new OffsetAndMetadata(1, "reset"), P1, new OffsetAndMetadata(2))).all().get();
            Map<TopicPartition, OffsetAndMetadata> after =
                admin.listConsumerGroupOffsets(GROUP).partitionsToOffsetAndMetadata().get();
            check(after.get(P0).offset() == 1 && after.get(P0).metadata().equals("reset") && after.get(P1).offset() == 2,
                "alterConsumerGroupOffsets on the Empty group: " + after);

            admin.deleteConsumerGroupOffsets(GROUP, Set.of(P1)).all().get();
            check(offsets(admin).equals(Map.of(P0, 1L)), "deleteConsumerGroupOffsets removed partition 1 only");

            admin.deleteConsumerGroups(Collections.singletonList(GROUP)).all().get();
            boolean listed = false;
            for (ConsumerGroupListing l : listConsumerGroups(admin)) if (l.groupId().equals(GROUP)) listed = true;
            check(!listed, "deleteConsumerGroups: the group is no longer listed");
            check(offsets(admin).isEmpty(), "deleteConsumerGroups: its offsets are gone");
            try {
                GroupState s = describe(admin).groupState();
                check(s == GroupState.DEAD, "describe after delete: Dead (" + s + ")");
            } catch (ExecutionException e) {
                check(e.getCause() instanceof GroupIdNotFoundException, "describe after delete: GroupIdNotFound (" + e.getCause() + ")");
            }
            expectFailure("deleteConsumerGroups of a deleted group", GroupIdNotFoundException.class,
                () -> admin.deleteConsumerGroups(Collections.singletonList(GROUP)).all().get());
        }
        System.out.println("GroupAdmin: OK");
    }
}

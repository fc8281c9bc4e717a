// Transactional offset commits with the official Java producer (kafka-clients 4.1, transactions V2: its
// sendOffsetsToTransaction sends TxnOffsetCommit v5, which adds the group's offsets partition implicitly).
//
//   java -cp "$(compat-tests/java/classpath.sh)" compat-tests/java/TxnOffsets.java --bootstrap HOST:PORT
//
// Three transactions each send one record and the input partition's offset for group java-txno-g: the
// committed one makes offset 5 visible to the Admin's listConsumerGroupOffsets, the aborted one (offset 9)
// changes nothing, the third (offset 12) is invisible while open (the last committed offset, 5, is listed)
// and visible after its commit. Prints "TxnOffsets: OK" and exits 0 on success, 1 on any mismatch.

import java.util.List;
import java.util.Map;
import java.util.Properties;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerGroupMetadata;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringSerializer;

public class TxnOffsets {
    static final String IN = "java-txno-in";
    static final String OUT = "java-txno-out";
    static final String GROUP = "java-txno-g";
    static final TopicPartition TP = new TopicPartition(IN, 0);

    static void fail(String msg) {
        System.err.println("TxnOffsets: FAIL: " + msg);
        System.exit(1);
    }

    static long committed(Admin admin) throws Exception {
        Map<TopicPartition, OffsetAndMetadata> m =
            admin.listConsumerGroupOffsets(GROUP).partitionsToOffsetAndMetadata().get();
        OffsetAndMetadata o = m.get(TP);
        return o == null ? -1 : o.offset();
    }

    static void txn(KafkaProducer<String, String> p, long offset) throws Exception {
        p.beginTransaction();
        p.send(new ProducerRecord<>(OUT, 0, "k", "v")).get();
        p.sendOffsetsToTransaction(
            Map.of(TP, new OffsetAndMetadata(offset, "meta-" + offset)),
            new ConsumerGroupMetadata(GROUP));
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = "127.0.0.1:9092";
        for (int i = 0; i + 1 < args.length; i++) {
            if (args[i].equals("--bootstrap")) bootstrap = args[i + 1];
        }
        Properties ap = new Properties();
        ap.put("bootstrap.servers", bootstrap);
        try (Admin admin = Admin.create(ap)) {
            admin.createTopics(List.of(new NewTopic(IN, 1, (short) 1), new NewTopic(OUT, 1, (short) 1)))
                .all().get();
            Properties pp = new Properties();
            pp.put("bootstrap.servers", bootstrap);
            pp.put("transactional.id", "java-txno-1");
            pp.put("key.serializer", StringSerializer.class.getName());
            pp.put("value.serializer", StringSerializer.class.getName());
            try (KafkaProducer<String, String> p = new KafkaProducer<>(pp)) {
                p.initTransactions();
                txn(p, 5);
                p.commitTransaction();
                long c = committed(admin);
                if (c != 5) fail("after commit: " + c);
                OffsetAndMetadata o = admin.listConsumerGroupOffsets(GROUP)
                    .partitionsToOffsetAndMetadata().get().get(TP);
                if (!"meta-5".equals(o.metadata())) fail("metadata: " + o.metadata());

                txn(p, 9);
                p.abortTransaction();
                c = committed(admin);
                if (c != 5) fail("after abort: " + c);

                txn(p, 12);
                p.flush();
                c = committed(admin);
                if (c != 5) fail("while open: " + c);
                p.commitTransaction();
                c = committed(admin);
                if (c != 12) fail("after the second commit: " + c);
            }
        } catch (Exception e) {
            e.printStackTrace();
            fail("unexpected " + e);
        }
        System.out.println("TxnOffsets: OK");
    }
}

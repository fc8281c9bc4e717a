// Transaction administration with the official Java Admin client (kafka-clients 4.1), as kafka-transactions.sh
// uses it, against a transaction of the Java producer left open and then committed.
//
//   java -cp "$(compat-tests/java/classpath.sh)" compat-tests/java/TxnAdmin.java --bootstrap HOST:PORT
//
// A transactional producer begins a transaction and sends one record to each of 2 partitions (flushed, not
// committed). listTransactions shows it ONGOING with its producer id; the state, producer id, duration and
// transactional-id-pattern filters (ListTransactions v1/v2) keep or drop it; describeTransactions shows the
// state, producer id and epoch, the producer's timeout, a start time, both partitions and coordinator 1; an
// unknown id fails with TransactionalIdNotFoundException. After commitTransaction it is COMPLETE_COMMIT with
// no partitions. Prints "TxnAdmin: OK" and exits 0 on success, 1 on any mismatch or unexpected error.

import java.util.Collection;
import java.util.List;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ListTransactionsOptions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TransactionDescription;
import org.apache.kafka.clients.admin.TransactionListing;
import org.apache.kafka.clients.admin.TransactionState;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.TransactionalIdNotFoundException;
import org.apache.kafka.common.serialization.StringSerializer;

public class TxnAdmin {
    static final String TOPIC = "java-txn-topic";
    static final String ID = "java-txn-1";

    static void fail(String msg) {
        System.err.println("TxnAdmin: FAIL: " + msg);
        System.exit(1);
    }

    static void check(boolean ok, String what) {
        if (!ok) fail(what);
    }

    static TransactionListing find(Collection<TransactionListing> all) {
        for (TransactionListing l : all) {
            if (l.transactionalId().equals(ID)) return l;
        }
        return null;
    }

    static TransactionListing listed(Admin admin, ListTransactionsOptions opts) throws Exception {
        return find(admin.listTransactions(opts).all().get());
    }

    static TransactionDescription describe(Admin admin) throws Exception {
        return admin.describeTransactions(List.of(ID)).description(ID).get();
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = "127.0.0.1:9092";
        for (int i = 0; i + 1 < args.length; i++) {
            if (args[i].equals("--bootstrap")) bootstrap = args[i + 1];
        }
        Properties ap = new Properties();
        ap.put("bootstrap.servers", bootstrap);
        try (Admin admin = Admin.create(ap)) {
            admin.createTopics(List.of(new NewTopic(TOPIC, 2, (short) 1))).all().get();

            Properties pp = new Properties();
            pp.put("bootstrap.servers", bootstrap);
            pp.put("transactional.id", ID);
            pp.put("transaction.timeout.ms", "60000");
            pp.put("key.serializer", StringSerializer.class.getName());
            pp.put("value.serializer", StringSerializer.class.getName());
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
                producer.initTransactions();
                producer.beginTransaction();
                producer.send(new ProducerRecord<>(TOPIC, 0, "k", "v")).get();
                producer.send(new ProducerRecord<>(TOPIC, 1, "k", "v")).get();

                TransactionListing l = listed(admin, new ListTransactionsOptions());
                check(l != null, "listTransactions does not list " + ID);
                check(l.state() == TransactionState.ONGOING, "listed state " + l.state());
                long pid = l.producerId();
                check(pid >= 0, "producer id " + pid);
                check(listed(admin, new ListTransactionsOptions().filterStates(Set.of(TransactionState.ONGOING))) != null,
                    "state filter ONGOING drops it");
                check(listed(admin, new ListTransactionsOptions().filterStates(Set.of(TransactionState.COMPLETE_COMMIT))) == null,
                    "state filter COMPLETE_COMMIT keeps it");
                check(listed(admin, new ListTransactionsOptions().filterProducerIds(Set.of(pid))) != null,
                    "producer id filter drops it");
                check(listed(admin, new ListTransactionsOptions().filterProducerIds(Set.of(pid + 1000))) == null,
                    "another producer id keeps it");
                check(listed(admin, new ListTransactionsOptions().filterOnDuration(3_600_000L)) == null,
                    "an hour-long duration filter keeps a younger transaction");
                Thread.sleep(20);
                check(listed(admin, new ListTransactionsOptions().filterOnDuration(1L)) != null,
                    "a 1 ms duration filter drops it");
                check(listed(admin, new ListTransactionsOptions().filterOnTransactionalIdPattern("java-txn-.*")) != null,
                    "pattern java-txn-.* drops it");
                check(listed(admin, new ListTransactionsOptions().filterOnTransactionalIdPattern("java-txn")) == null,
                    "pattern java-txn (not the whole id) keeps it");

                TransactionDescription d = describe(admin);
                check(d.state() == TransactionState.ONGOING, "described state " + d.state());
                check(d.producerId() == pid, "described producer id " + d.producerId() + " != " + pid);
                check(d.producerEpoch() >= 0, "epoch " + d.producerEpoch());
                check(d.transactionTimeoutMs() == 60000, "timeout " + d.transactionTimeoutMs());
                check(d.transactionStartTimeMs().isPresent() && d.transactionStartTimeMs().getAsLong() > 0,
                    "start time " + d.transactionStartTimeMs());
                check(d.topicPartitions().equals(Set.of(new TopicPartition(TOPIC, 0), new TopicPartition(TOPIC, 1))),
                    "partitions " + d.topicPartitions());
                check(d.coordinatorId() == 1, "coordinator " + d.coordinatorId());

                try {
                    admin.describeTransactions(List.of("java-txn-nobody")).description("java-txn-nobody").get();
                    fail("describing an unknown id succeeded");
                } catch (ExecutionException e) {
                    check(e.getCause() instanceof TransactionalIdNotFoundException, "unknown id: " + e.getCause());
                }

                producer.commitTransaction();
                d = describe(admin);
                check(d.state() == TransactionState.COMPLETE_COMMIT, "state after commit " + d.state());
                check(d.topicPartitions().isEmpty(), "partitions after commit " + d.topicPartitions());
                l = listed(admin, new ListTransactionsOptions());
                check(l != null && l.state() == TransactionState.COMPLETE_COMMIT, "listed after commit " + l);
                System.out.println("TxnAdmin: OK producerId=" + pid + " epoch=" + d.producerEpoch());
            }
        } catch (ExecutionException e) {
            fail("unexpected: " + e.getCause());
        }
    }
}

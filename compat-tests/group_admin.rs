//! The Java Admin client's consumer group calls (kafka-clients 4.1.1), as `kafka-consumer-groups.sh` makes
//! them: compat-tests/java/GroupAdmin.java checks every answer with a live classic-protocol member and after it
//! left (see the program's header for the list).

use crate::common::{bounded, run_java, Broker};

#[test]
fn java_admin_list_describe_alter_delete_consumer_groups() {
    bounded(200, || {
        let b = Broker::start_with(&[("GROUP_INITIAL_REBALANCE_DELAY_MS", "200")]);
        let text = run_java("GroupAdmin.java", &b, &[]);
        assert!(text.contains("GroupAdmin: OK"), "{text}");
    });
}

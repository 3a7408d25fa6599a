//! Every RFC 7047 operation against a real ovsdb-server.

mod common;

use std::time::{Duration, Instant};

use ovs::vswitch::DB;
use ovs::{
    Atom, Condition, Error, Function, Mutation, Mutator, OpResult, Operation, RowData, RowValues,
    Value,
};

fn insert_bridge(name: &str, uuid_name: &str) -> Vec<Operation> {
    vec![
        Operation::Insert {
            table: "Bridge".into(),
            row: RowValues::from([("name", Value::from(name))]),
            uuid_name: Some(uuid_name.into()),
            uuid: None,
        },
        Operation::Mutate {
            table: "Open_vSwitch".into(),
            conditions: vec![],
            mutations: vec![Mutation::new(
                "bridges",
                Mutator::Insert,
                Value::set([Atom::NamedUuid(uuid_name.into())]),
            )],
        },
    ]
}

fn select(table: &'static str, conditions: Vec<Condition>, columns: &[&str]) -> Operation {
    Operation::Select {
        table: table.into(),
        conditions,
        columns: Some(columns.iter().map(|c| c.to_string()).collect()),
    }
}

fn op_failure(e: Error) -> ovs::OpFailure {
    match e {
        Error::OpFailed(f) => *f,
        other => panic!("expected an op failure, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_dbs_and_schema() {
    let sb = common::ovsdb();
    let c = common::client(&sb).await;
    assert!(c.list_dbs().await.unwrap().contains(&DB.to_string()));
    let s = c.get_schema(DB).await.unwrap();
    assert_eq!(s.name, DB);
    assert!(s.tables.contains_key("Interface"));
    c.echo().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_select_update_delete_comment_commit() {
    let sb = common::ovsdb();
    let c = common::client(&sb).await;
    let mut ops = insert_bridge("br-a", "b");
    ops.push(Operation::Comment("crosspod test".into()));
    ops.push(Operation::Commit { durable: false });
    let r = c.transact(DB, &ops).await.unwrap();
    let uuid = r[0].uuid().expect("insert returns a uuid");
    assert_eq!(r[1], OpResult::Count(1));
    assert_eq!(r[2], OpResult::Empty);

    // ovs-vsctl sees what we inserted.
    assert_eq!(sb.vsctl(&["list-br"]).unwrap().trim(), "br-a");

    let r = c
        .transact(
            DB,
            &[
                Operation::Update {
                    table: "Bridge".into(),
                    conditions: vec![Condition::uuid(uuid)],
                    row: RowValues::from([
                        ("datapath_type", Value::from("netdev")),
                        ("fail_mode", Value::set(["secure"])),
                    ]),
                },
                select(
                    "Bridge",
                    vec![Condition::eq("name", "br-a")],
                    &["_uuid", "datapath_type", "fail_mode"],
                ),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r[0], OpResult::Count(1));
    let row = &r[1].rows()[0];
    assert_eq!(row["_uuid"], Value::from(uuid));
    assert_eq!(row["datapath_type"], Value::from("netdev"));
    assert_eq!(row["fail_mode"], Value::set(["secure"]));

    // delete of a referenced root row: first drop the reference, then delete.
    let r = c
        .transact(
            DB,
            &[
                Operation::Mutate {
                    table: "Open_vSwitch".into(),
                    conditions: vec![],
                    mutations: vec![Mutation::new(
                        "bridges",
                        Mutator::Delete,
                        Value::set([uuid]),
                    )],
                },
                Operation::Delete {
                    table: "Bridge".into(),
                    conditions: vec![Condition::new("name", Function::Ne, "nonexistent")],
                },
            ],
        )
        .await
        .unwrap();
    assert_eq!(r[1], OpResult::Count(1));
    assert_eq!(sb.vsctl(&["list-br"]).unwrap().trim(), "");
    let counters = c.counters();
    assert_eq!(counters.transactions, 3);
    assert_eq!(counters.write_transactions, 3);
    assert_eq!(counters.failed_transactions, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutate_sets_maps_and_integers() {
    let sb = common::ovsdb();
    let c = common::client(&sb).await;
    sb.vsctl(&["add-br", "br-m", "--", "add-port", "br-m", "p1"])
        .unwrap();
    let p1 = vec![Condition::eq("name", "p1")];
    let mutate = |column: &str, m: Mutator, v: Value| Operation::Mutate {
        table: "Port".into(),
        conditions: p1.clone(),
        mutations: vec![Mutation::new(column, m, v)],
    };
    c.transact(
        DB,
        &[
            mutate("trunks", Mutator::Insert, Value::set([10i64, 20, 30])),
            mutate("trunks", Mutator::Delete, Value::set([20i64])),
            mutate(
                "external_ids",
                Mutator::Insert,
                Value::string_map([("a", "1"), ("b", "2")]),
            ),
            mutate("external_ids", Mutator::Delete, Value::set(["a"])),
            mutate("tag", Mutator::Insert, Value::set([7i64])),
            mutate("tag", Mutator::Add, Value::from(3i64)),
            mutate("tag", Mutator::Mul, Value::from(2i64)),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        sb.vsctl(&["get", "Port", "p1", "trunks"]).unwrap().trim(),
        "[10, 30]"
    );
    assert_eq!(
        sb.vsctl(&["get", "Port", "p1", "external_ids"])
            .unwrap()
            .trim(),
        "{b=\"2\"}"
    );
    assert_eq!(
        sb.vsctl(&["get", "Port", "p1", "tag"]).unwrap().trim(),
        "20"
    );

    // A mutation that breaks a constraint fails at its own index, naming table and column.
    let f = op_failure(
        c.transact(
            DB,
            &[
                Operation::Comment("first".into()),
                mutate("tag", Mutator::Insert, Value::set([9i64])),
            ],
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        (f.index, f.op, f.table.as_str(), f.columns.as_str()),
        (1, "mutate", "Port", "tag")
    );
    assert!(f.error.contains("constraint"), "{f}");
    assert!(f.details.is_some(), "server details kept: {f}");
    assert_eq!(c.counters().failed_transactions, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_and_commit_time_errors() {
    let sb = common::ovsdb();
    let c = common::client(&sb).await;
    let mut ops = insert_bridge("br-x", "b");
    ops.push(Operation::Abort);
    let f = op_failure(c.transact(DB, &ops).await.unwrap_err());
    assert_eq!((f.index, f.op), (2, "abort"));
    assert_eq!(f.error, "aborted");
    assert_eq!(
        sb.vsctl(&["list-br"]).unwrap().trim(),
        "",
        "aborted txn left nothing"
    );

    // Duplicate bridge name: the index check fails at commit, after the last op.
    c.transact(DB, &insert_bridge("br-x", "b")).await.unwrap();
    let f = op_failure(
        c.transact(DB, &insert_bridge("br-x", "b"))
            .await
            .unwrap_err(),
    );
    assert_eq!(f.index, 2, "{f}");
    assert_eq!(f.op, "commit");
    assert!(f.error.contains("constraint violation"), "{f}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_times_out_and_succeeds() {
    let sb = common::ovsdb();
    let c = common::client(&sb).await;
    sb.vsctl(&["add-br", "br-w"]).unwrap();
    let wait = |until_equal: bool, dp: &str, timeout_ms: Option<u64>| Operation::Wait {
        table: "Bridge".into(),
        conditions: vec![Condition::eq("name", "br-w")],
        columns: vec!["datapath_type".into()],
        until_equal,
        rows: vec![RowData::from([(
            "datapath_type".to_string(),
            Value::from(dp),
        )])],
        timeout_ms,
    };
    // Already true: succeeds at once.
    c.transact(DB, &[wait(true, "", Some(0))]).await.unwrap();
    // Never true: times out after the given time.
    let t0 = Instant::now();
    let f = op_failure(
        c.transact(DB, &[wait(true, "netdev", Some(200))])
            .await
            .unwrap_err(),
    );
    assert_eq!((f.index, f.op, f.error.as_str()), (0, "wait", "timed out"));
    assert!(
        t0.elapsed() >= Duration::from_millis(150),
        "waited {:?}",
        t0.elapsed()
    );

    // Becomes true while the wait is pending on the same session: another request on the
    // same connection makes it true.
    let c2 = c.clone();
    let waiter = tokio::spawn(async move {
        c2.transact(
            DB,
            &[
                wait(true, "netdev", Some(10_000)),
                Operation::Comment("after wait".into()),
            ],
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !waiter.is_finished(),
        "wait returned before the condition held"
    );
    c.transact(
        DB,
        &[Operation::Update {
            table: "Bridge".into(),
            conditions: vec![Condition::eq("name", "br-w")],
            row: RowValues::from([("datapath_type", Value::from("netdev"))]),
        }],
    )
    .await
    .unwrap();
    let r = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("wait completes once the row matches")
        .unwrap()
        .unwrap();
    assert_eq!(r.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assert_needs_the_lock() {
    let sb = common::ovsdb();
    let c = common::client(&sb).await;
    let other = common::client(&sb).await;
    let ops = [
        Operation::Assert {
            lock: "crosspod".into(),
        },
        Operation::Comment("locked work".into()),
    ];
    let f = op_failure(c.transact(DB, &ops).await.unwrap_err());
    assert_eq!(
        (f.index, f.op, f.error.as_str()),
        (0, "assert", "not owner")
    );
    assert!(c.lock("crosspod").await.unwrap());
    c.transact(DB, &ops).await.unwrap();
    // A second session queues behind the owner and may not assert.
    assert!(!other.lock("crosspod").await.unwrap());
    let f = op_failure(other.transact(DB, &ops).await.unwrap_err());
    assert_eq!(f.error, "not owner");
    c.unlock("crosspod").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_checks_refuse_before_sending() {
    let sb = common::ovsdb();
    let c = common::client(&sb).await;
    let cases = [
        Operation::Insert {
            table: "Bridge".into(),
            row: RowValues::from([("nme", Value::from("x"))]),
            uuid_name: None,
            uuid: None,
        },
        Operation::Update {
            table: "Port".into(),
            conditions: vec![],
            row: RowValues::from([("tag", Value::set([4096i64]))]),
        },
        Operation::Update {
            table: "Port".into(),
            conditions: vec![],
            row: RowValues::from([("tag", Value::from("ten"))]),
        },
        Operation::Select {
            table: "Nope".into(),
            conditions: vec![],
            columns: None,
        },
        Operation::Mutate {
            table: "Bridge".into(),
            conditions: vec![],
            mutations: vec![Mutation::new("name", Mutator::Insert, Value::set(["x"]))],
        },
    ];
    for (i, op) in cases.into_iter().enumerate() {
        match c.transact(DB, &[Operation::Comment("c".into()), op]).await {
            Err(Error::Schema { index, .. }) => assert_eq!(index, 1, "case {i}"),
            other => panic!("case {i}: expected a schema error, got {other:?}"),
        }
    }
    assert_eq!(c.counters().transactions, 0, "nothing was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_requests_in_flight_on_one_session() {
    let sb = common::ovsdb();
    let c = common::client(&sb).await;
    let mut tasks = Vec::new();
    for i in 0..64 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("br{i}");
            c.transact(DB, &insert_bridge(&name, "b"))
                .await
                .map(|r| (name, r))
        }));
    }
    let mut names = Vec::new();
    for t in tasks {
        let (name, r) = t.await.unwrap().unwrap();
        assert!(r[0].uuid().is_some());
        names.push(name);
    }
    let listed = sb.vsctl(&["list-br"]).unwrap();
    assert_eq!(listed.lines().count(), 64);
    for n in names {
        assert!(listed.lines().any(|l| l == n), "{n} missing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_over_tcp() {
    let sb = common::ovsdb();
    let ep = sb.add_tcp_remote().unwrap();
    let mut cfg = common::config(&sb);
    cfg.endpoint = ep;
    let c = ovs::Client::connect(cfg).await.unwrap();
    assert!(c.endpoint().starts_with("tcp:127.0.0.1:"));
    let r = c.transact(DB, &insert_bridge("br-tcp", "b")).await.unwrap();
    assert!(r[0].uuid().is_some());
    assert_eq!(sb.vsctl(&["list-br"]).unwrap().trim(), "br-tcp");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_probes_keep_an_idle_session() {
    let sb = common::ovsdb();
    let mut cfg = common::config(&sb);
    cfg.inactivity_probe = Some(Duration::from_millis(100));
    cfg.request_timeout = Duration::from_millis(500);
    let c = ovs::Client::connect(cfg).await.unwrap();
    // Idle for many probe intervals: echoes go out, the server answers, nothing drops.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(c.is_connected());
    assert_eq!(c.counters().reconnects, 0);
    c.echo().await.unwrap();
    // A killed server is noticed and requests fail instead of hanging.
    sb.stop_ovsdb().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while c.is_connected() {
        assert!(Instant::now() < deadline, "dead server not noticed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t0 = Instant::now();
    let e = c.list_dbs().await.unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert!(matches!(e, Error::Disconnected { .. }), "{e}");
}

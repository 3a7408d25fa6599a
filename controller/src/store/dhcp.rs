//! The store's part of DHCP ports (`network:dhcp`, one per network and pod, made and adjusted
//! by the realizer): as in Neutron, they never hold up deleting their subnet or network —
//! deleting a subnet takes their address on it (and the port with its last one), deleting a
//! network takes its DHCP ports, in the same transaction.

use super::{col_i, col_s, WriteTx};
use crate::error::StoreError;
use crate::naming::OWNER_DHCP;

/// Inside a subnet's deletion: release the DHCP ports' addresses on it; a DHCP port left
/// without any is deleted.
pub(super) async fn release_subnet(w: &mut WriteTx<'_>, subnet_id: &str) -> Result<(), StoreError> {
    let rows = sqlx::query(
        "SELECT a.port_id AS port_id FROM ip_allocations a JOIN ports p ON p.id = a.port_id WHERE a.subnet_id = $1 AND p.device_owner = $2",
    )
    .bind(subnet_id.to_string())
    .bind(OWNER_DHCP)
    .fetch_all(&mut *w.tx)
    .await
    .map_err(StoreError::db(format!("reading DHCP ports of subnet {subnet_id}")))?;
    let ports: Vec<String> = rows
        .iter()
        .map(|r| col_s(r, "port_id"))
        .collect::<Result<_, _>>()?;
    for port in ports {
        sqlx::query("DELETE FROM ip_allocations WHERE port_id = $1 AND subnet_id = $2")
            .bind(port.clone())
            .bind(subnet_id.to_string())
            .execute(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!(
                "releasing DHCP port {port}'s address"
            )))?;
        let left = sqlx::query("SELECT COUNT(*) AS c FROM ip_allocations WHERE port_id = $1")
            .bind(port.clone())
            .fetch_one(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!(
                "counting DHCP port {port}'s addresses"
            )))?;
        if col_i(&left, "c")? == 0 {
            delete_port(w, &port).await?;
        } else {
            sqlx::query(
                "UPDATE ports SET revision_number = revision_number + 1, updated_at = $1 WHERE id = $2",
            )
            .bind(super::now())
            .bind(port.clone())
            .execute(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!("updating DHCP port {port}")))?;
        }
        w.touch(super::changes::ChangeKind::Port, &port);
        tracing::info!(port = %port, subnet = subnet_id, "released a DHCP port's address with its subnet");
    }
    Ok(())
}

/// Inside a network's deletion: delete its DHCP ports.
pub(super) async fn release_network(
    w: &mut WriteTx<'_>,
    network_id: &str,
) -> Result<(), StoreError> {
    let rows = sqlx::query("SELECT id FROM ports WHERE network_id = $1 AND device_owner = $2")
        .bind(network_id.to_string())
        .bind(OWNER_DHCP)
        .fetch_all(&mut *w.tx)
        .await
        .map_err(StoreError::db(format!(
            "reading DHCP ports of network {network_id}"
        )))?;
    for r in &rows {
        let port = col_s(r, "id")?;
        delete_port(w, &port).await?;
        w.touch(super::changes::ChangeKind::Port, &port);
        tracing::info!(port = %port, network = network_id, "deleted a DHCP port with its network");
    }
    Ok(())
}

async fn delete_port(w: &mut WriteTx<'_>, port: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM ports WHERE id = $1")
        .bind(port.to_string())
        .execute(&mut *w.tx)
        .await
        .map_err(StoreError::db(format!("deleting DHCP port {port}")))?;
    Ok(())
}

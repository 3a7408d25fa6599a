//! Pods.

use sqlx::any::AnyRow;

use super::{col_json, col_s, Pod, Store};
use crate::error::{DomainError, StoreError};

fn pod_from_row(r: &AnyRow) -> Result<Pod, StoreError> {
    Ok(Pod {
        pod_id: col_s(r, "pod_id")?,
        region_name: col_s(r, "region_name")?,
        az_name: col_s(r, "az_name")?,
        pod_az_name: col_s(r, "pod_az_name")?,
        dc_name: col_s(r, "dc_name")?,
    })
}

impl Store {
    /// Create a pod. Region names are unique and there is one central pod (empty `az_name`):
    /// both are constraints, reported as 409.
    pub async fn create_pod(&self, pod: &Pod) -> Result<Pod, StoreError> {
        let mut w = self.begin_write().await?;
        let central = i64::from(pod.az_name.is_empty());
        let res = sqlx::query(
            "INSERT INTO pods (pod_id, region_name, az_name, pod_az_name, dc_name, is_central) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(pod.pod_id.clone())
        .bind(pod.region_name.clone())
        .bind(pod.az_name.clone())
        .bind(pod.pod_az_name.clone())
        .bind(pod.dc_name.clone())
        .bind(central)
        .execute(&mut *w.tx)
        .await
        .map_err(StoreError::db(format!("inserting pod {}", pod.region_name)))?;
        if res.rows_affected() == 0 {
            let dup = sqlx::query("SELECT pod_id FROM pods WHERE region_name = $1")
                .bind(pod.region_name.clone())
                .fetch_optional(&mut *w.tx)
                .await
                .map_err(StoreError::db("checking pod duplicates"))?;
            let msg = if dup.is_some() {
                format!("Pod with region_name {} already exists", pod.region_name)
            } else if central == 1 {
                "A central pod (empty az_name) already exists; only one is allowed".to_string()
            } else {
                format!("Pod {} conflicts with an existing pod", pod.region_name)
            };
            return Err(DomainError::conflict("PodConflict", msg).into());
        }
        w.touch(super::changes::ChangeKind::Pod, &pod.pod_id);
        w.commit().await?;
        Ok(pod.clone())
    }

    /// All pods, ordered by region name.
    pub async fn list_pods(&self) -> Result<Vec<Pod>, StoreError> {
        let rows = sqlx::query("SELECT * FROM pods ORDER BY region_name")
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::db("listing pods"))?;
        rows.iter().map(pod_from_row).collect()
    }

    /// One pod.
    pub async fn get_pod(&self, id: &str) -> Result<Pod, StoreError> {
        let row = sqlx::query("SELECT * FROM pods WHERE pod_id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::db(format!("reading pod {id}")))?;
        match row {
            Some(r) => pod_from_row(&r),
            None => Err(DomainError::not_found("Pod", "PodNotFound", id).into()),
        }
    }

    /// Delete a pod; 409 while a network's `availability_zone_hints` name it or a port is bound
    /// to one of its nodes.
    pub async fn delete_pod(&self, id: &str) -> Result<(), StoreError> {
        let mut w = self.begin_write().await?;
        let row = sqlx::query("SELECT * FROM pods WHERE pod_id = $1")
            .bind(id.to_string())
            .fetch_optional(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!("reading pod {id}")))?;
        let Some(row) = row else {
            return Err(DomainError::not_found("Pod", "PodNotFound", id).into());
        };
        let pod = pod_from_row(&row)?;
        let nets = sqlx::query("SELECT id, az_hints FROM networks WHERE az_hints <> '[]'")
            .fetch_all(&mut *w.tx)
            .await
            .map_err(StoreError::db("reading network hints"))?;
        for n in &nets {
            let hints: Vec<String> = col_json(n, "az_hints")?;
            if hints
                .iter()
                .any(|h| *h == pod.region_name || (!pod.az_name.is_empty() && *h == pod.az_name))
            {
                let nid = col_s(n, "id")?;
                return Err(DomainError::new(
                    crate::error::ErrorClass::Conflict,
                    "PodInUse",
                    format!("Pod {} still hosts network {nid}", pod.region_name),
                )
                .into());
            }
        }
        // Ports bound to a node of the pod (nodes register with their pod).
        let bound = sqlx::query("SELECT p.id AS id, a.node AS node FROM ports p JOIN agents a ON p.host_id = a.node WHERE a.pod = $1 LIMIT 1")
            .bind(pod.region_name.clone())
            .fetch_optional(&mut *w.tx)
            .await
            .map_err(StoreError::db("reading ports bound in the pod"))?;
        if let Some(b) = bound {
            return Err(DomainError::new(
                crate::error::ErrorClass::Conflict,
                "PodInUse",
                format!(
                    "Pod {} still hosts port {} (bound to node {})",
                    pod.region_name,
                    col_s(&b, "id")?,
                    col_s(&b, "node")?
                ),
            )
            .into());
        }
        sqlx::query("DELETE FROM pods WHERE pod_id = $1")
            .bind(id.to_string())
            .execute(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!("deleting pod {id}")))?;
        w.touch(super::changes::ChangeKind::Pod, id);
        w.commit().await
    }
}

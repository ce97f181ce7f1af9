//! Reading every page of a paged endpoint (`--all`, and the commands that need all users).

use std::future::Future;

use super::CliError;

/// The most items the Management API returns per page.
pub const MAX_PER_PAGE: u32 = 100;

/// Every item of a paged list: asks `fetch(page, per_page)` for page 0, 1, … with the
/// largest page size, until a page comes back short.
///
/// Auth0 answers only the first 1,000 results of a list or search (the page that would
/// go past them is a 400, which is returned as it came); idlink has no such cap.
pub async fn every_page<T, F, Fut>(mut fetch: F) -> Result<Vec<T>, CliError>
where
    F: FnMut(u32, u32) -> Fut,
    Fut: Future<Output = Result<Vec<T>, CliError>>,
{
    let mut all = Vec::new();
    for page in 0.. {
        let items = fetch(page, MAX_PER_PAGE).await?;
        let last = items.len() < MAX_PER_PAGE as usize;
        all.extend(items);
        if last {
            break;
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A list of `total` numbers served `per_page` at a time, recording the pages asked.
    async fn serve(total: u32) -> (Vec<u32>, Vec<u32>) {
        let mut asked = Vec::new();
        let items = every_page(|page, per_page| {
            asked.push(page);
            let start = page * per_page;
            let end = (start + per_page).min(total);
            std::future::ready(Ok((start..end.max(start)).collect::<Vec<_>>()))
        })
        .await
        .unwrap();
        (items, asked)
    }

    #[tokio::test]
    async fn stops_at_the_first_short_page() {
        let (items, asked) = serve(250).await;
        assert_eq!(items, (0..250).collect::<Vec<_>>());
        assert_eq!(asked, vec![0, 1, 2]);
    }

    #[tokio::test]
    async fn an_exact_multiple_costs_one_empty_page() {
        let (items, asked) = serve(200).await;
        assert_eq!(items.len(), 200);
        assert_eq!(asked, vec![0, 1, 2]);
        let (items, asked) = serve(0).await;
        assert!(items.is_empty());
        assert_eq!(asked, vec![0]);
    }
}

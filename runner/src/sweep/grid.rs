//! The cartesian product of sweep axes.
use serde_json::Value;

/// One point of a sweep: a value for each swept dotted key, in axis order.
pub type Point = Vec<(String, Value)>;

/// Every combination of the axes' values, the last axis varying fastest.
/// No axes give one empty point (the base configuration).
pub fn product(axes: &[(String, Vec<Value>)]) -> Vec<Point> {
    axes.iter().fold(vec![Vec::new()], |points, (key, values)| {
        points
            .iter()
            .flat_map(|point| {
                values.iter().map(move |v| {
                    let mut next = point.clone();
                    next.push((key.clone(), v.clone()));
                    next
                })
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn product_of_two_axes_in_order() {
        let axes = vec![("a".to_string(), vec![json!(1), json!(2)]), ("b".to_string(), vec![json!("x"), json!("y"), json!("z")])];
        let points = product(&axes);
        assert_eq!(points.len(), 6);
        assert_eq!(points[0], vec![("a".into(), json!(1)), ("b".into(), json!("x"))]);
        assert_eq!(points[5], vec![("a".into(), json!(2)), ("b".into(), json!("z"))]);
    }

    #[test]
    fn no_axes_is_one_point() {
        assert_eq!(product(&[]), vec![Vec::new()]);
    }
}

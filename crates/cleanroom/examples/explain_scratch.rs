use confide_cleanroom::{aml, privacy};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::physical_plan::displayable;
use datafusion::prelude::*;
use std::sync::Arc;

#[tokio::main]
async fn main() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("tx_id", DataType::Utf8, true),
        Field::new("day", DataType::Int64, true),
        Field::new("kind", DataType::Utf8, true),
        Field::new("from_account", DataType::Utf8, true),
        Field::new("to_account", DataType::Utf8, true),
        Field::new("customer", DataType::Utf8, true),
        Field::new("amount", DataType::Float64, true),
    ]));
    let ctx = SessionContext::new();
    let mut declared = std::collections::BTreeMap::new();
    for (_, name) in aml::BANKS {
        let t = MemTable::try_new(schema.clone(), vec![vec![]]).unwrap();
        ctx.register_table(name, Arc::new(t)).unwrap();
        declared.insert(name.to_string(), aml::privacy());
    }
    let df = ctx.sql(aml::SQL).await.unwrap();
    let which = std::env::args().nth(1).unwrap_or_default();
    let plan = if which == "guard" {
        privacy::guard(df.logical_plan(), &declared, aml::RULE)
            .unwrap()
            .plan
    } else {
        df.logical_plan().clone()
    };
    let df = DataFrame::new(ctx.state(), plan);
    let phys = df.create_physical_plan().await.unwrap();
    println!("{}", displayable(phys.as_ref()).indent(true));
}

// pgJDBC's DatabaseMetaData and ResultSetMetaData against a server, as DBeaver,
// DataGrip and Metabase call them; prints what they answer, one fact a line, for
// tests/jdbc.rs to check. Run: java -cp postgresql.jar Metadata.java <jdbc url>
import java.sql.*;

public class Metadata {
    static void rows(String label, ResultSet rs, String... columns) throws SQLException {
        while (rs.next()) {
            StringBuilder line = new StringBuilder(label);
            for (String c : columns) {
                line.append('|').append(rs.getString(c));
            }
            System.out.println(line);
        }
        rs.close();
    }

    public static void main(String[] args) throws Exception {
        try (Connection conn = DriverManager.getConnection(args[0], "tarn", "")) {
            DatabaseMetaData meta = conn.getMetaData();
            System.out.println("product|" + meta.getDatabaseProductName() + "|" + meta.getDatabaseMajorVersion());
            rows("schema", meta.getSchemas(), "TABLE_SCHEM");
            rows("table", meta.getTables(null, "public", "%", new String[] {"TABLE", "VIEW"}),
                 "TABLE_SCHEM", "TABLE_NAME", "TABLE_TYPE");
            rows("column", meta.getColumns(null, "public", "items", "%"),
                 "COLUMN_NAME", "TYPE_NAME", "DATA_TYPE", "COLUMN_SIZE", "NULLABLE", "COLUMN_DEF", "ORDINAL_POSITION");
            rows("pk", meta.getPrimaryKeys(null, "public", "items"), "COLUMN_NAME", "KEY_SEQ", "PK_NAME");
            rows("index", meta.getIndexInfo(null, "public", "items", false, false),
                 "INDEX_NAME", "NON_UNIQUE", "COLUMN_NAME", "ORDINAL_POSITION");
            rows("imported", meta.getImportedKeys(null, "public", "items"), "FKCOLUMN_NAME");
            int types = 0;
            try (ResultSet rs = meta.getTypeInfo()) {
                while (rs.next()) {
                    if (rs.getString("TYPE_NAME").equals("vector")) System.out.println("typeinfo|vector");
                    types++;
                }
            }
            System.out.println("types|" + (types > 10));
            rows("function", meta.getFunctions(null, "public", "%"), "FUNCTION_NAME");

            // A fetch-size cursor: rows come in portions of 2 (Execute with a row limit).
            conn.setAutoCommit(false);
            try (Statement st = conn.createStatement()) {
                st.setFetchSize(2);
                try (ResultSet rs = st.executeQuery("SELECT id, title, embedding FROM items ORDER BY id")) {
                    ResultSetMetaData md = rs.getMetaData();
                    for (int i = 1; i <= md.getColumnCount(); i++) {
                        System.out.println("result|" + md.getColumnName(i) + "|" + md.getColumnTypeName(i)
                            + "|" + md.getTableName(i) + "|" + md.isNullable(i));
                    }
                    int n = 0;
                    while (rs.next()) n++;
                    System.out.println("fetched|" + n);
                }
            }
            conn.commit();
            try (PreparedStatement ps = conn.prepareStatement("SELECT title FROM items WHERE id = ?")) {
                ParameterMetaData pm = ps.getParameterMetaData();
                System.out.println("parameter|" + pm.getParameterTypeName(1));
                ps.setLong(1, 2);
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    System.out.println("prepared|" + rs.getString(1));
                }
            }
            conn.commit();
        }
    }
}

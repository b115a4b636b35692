// Generates src/commands.generated.ts from the contract's JSON Schema (docs/commands.schema.json).
//
//   npm run gen            write the file
//   npm run gen -- --check exit 1 when the committed file differs from what the schema gives
//
// The schema is the Python models' own (taskline_producer.contract.command_json_schema). Two
// shapes are rewritten before json-schema-to-typescript sees them, without changing what the
// schema accepts: property-level `title`s (which would become one alias type per property), and
// update_task's `anyOf: [{required: [title]}, {required: [description]}]`, which becomes two
// object variants so the type says "at least one of title and description".
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { compile } from "json-schema-to-typescript";

const here = dirname(fileURLToPath(import.meta.url));
export const SCHEMA_PATH = resolve(here, "../../../docs/commands.schema.json");
export const OUTPUT_PATH = resolve(here, "../src/commands.generated.ts");

const BANNER = `// Generated from docs/commands.schema.json by scripts/generate-types.mjs (npm run gen).
// Do not edit: change the Python models, regenerate the schema, then run npm run gen.`;

function withoutPropertyTitles(properties) {
  return Object.fromEntries(
    Object.entries(properties).map(([name, schema]) => {
      const { title: _unused, ...rest } = schema;
      return [name, rewrite(rest)];
    }),
  );
}

function isRequiredOnly(member) {
  return Object.keys(member).length === 1 && Array.isArray(member.required);
}

function rewrite(node) {
  if (Array.isArray(node)) return node.map(rewrite);
  if (node === null || typeof node !== "object") return node;
  const out = {};
  for (const [key, value] of Object.entries(node)) {
    out[key] = key === "properties" ? withoutPropertyTitles(value) : rewrite(value);
  }
  if (Array.isArray(out.anyOf) && out.properties && out.anyOf.every(isRequiredOnly)) {
    const { anyOf, properties, required, additionalProperties, type, ...about } = out;
    return {
      ...about,
      anyOf: anyOf.map((member) => ({
        type,
        additionalProperties,
        properties,
        required: [...required, ...member.required],
      })),
    };
  }
  return out;
}

export async function generate() {
  const schema = rewrite(JSON.parse(readFileSync(SCHEMA_PATH, "utf8")));
  // The root lists the three commands; the bulk argument is reachable only from $defs.
  schema.anyOf = [...schema.anyOf, { $ref: "#/$defs/apply_commands" }];
  schema.title = "JobArgument";
  return compile(schema, "JobArgument", {
    bannerComment: BANNER,
    additionalProperties: false,
    maxItems: -1,
    unreachableDefinitions: false,
    format: true,
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const generated = await generate();
  if (process.argv.includes("--check")) {
    if (readFileSync(OUTPUT_PATH, "utf8") !== generated) {
      console.error(`${OUTPUT_PATH} is stale: run npm run gen and commit the result`);
      process.exit(1);
    }
    console.log("src/commands.generated.ts matches docs/commands.schema.json");
  } else {
    writeFileSync(OUTPUT_PATH, generated);
    console.log(`wrote ${OUTPUT_PATH}`);
  }
}

// Words for people from the API's names: `stockOnHand` → "Stock on hand", `CATALOG_MANAGER` →
// "Catalog manager", `products` → "Products".

export function fromCamel(name: string): string {
  const words = name
    .replace(/_in$/, '')
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .replace(/Id\b/g, '')
    .trim()
    .toLowerCase();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** A field's label: `categoryId`, a reference shown by the category's name, is "Category";
 * `clientId`, shown as it is (`isReference` false), is "Client ID". */
export function fieldLabel(name: string, isReference = true): string {
  const id = name.endsWith('Id') && name.length > 2;
  if (id && !isReference) return `${fieldLabel(name.slice(0, -2))} ID`;
  const label = fromCamel(id ? name.slice(0, -2) : name);
  return label === 'Id' ? 'ID' : label.replace(/\bid\b/, 'ID').replace(/\buris\b/i, 'URIs');
}

/** `CLIENT_TYPE_PUBLIC` of the enum `ClientType` → "Public": without the enum's own prefix. */
export function enumLabel(value: string, enumName = ''): string {
  const prefix = `${enumName.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()}_`;
  const own = enumName && value.startsWith(prefix) && value.length > prefix.length ? value.slice(prefix.length) : value;
  const words = own.toLowerCase().replace(/_/g, ' ');
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** The first sentence of a description, for helper text. */
export function firstSentence(description: string): string {
  const line = description.replace(/\s+/g, ' ').trim();
  const end = line.search(/[.](\s|$)/);
  return end === -1 ? line : line.slice(0, end + 1);
}

// The one place for hand-written presentation: by GraphQL type, never by resource, and never
// needed for a resource to work (without an entry a type is shown field by field).

import type { ReactElement } from 'react';
import { Box } from '@mui/material';
import { FunctionField, NumberInput, TextInput, required as requiredValue } from 'react-admin';
import { useWatch } from 'react-hook-form';

/** Digits after the decimal point of `currency`'s minor unit (2 for EUR, 0 for JPY). */
export function minorDigits(currency: string | undefined): number {
  try {
    return new Intl.NumberFormat('en', { style: 'currency', currency: currency || 'XXX' }).resolvedOptions()
      .maximumFractionDigits ?? 2;
  } catch {
    return 2;
  }
}

interface Money {
  amountMinor?: string | number;
  currency?: string;
}

export function formatMoney(money: Money | undefined | null): string {
  if (!money || money.amountMinor === undefined || !money.currency) return '';
  const digits = minorDigits(money.currency);
  const amount = Number(money.amountMinor) / 10 ** digits;
  try {
    return new Intl.NumberFormat(undefined, { style: 'currency', currency: money.currency }).format(amount);
  } catch {
    return `${amount.toFixed(digits)} ${money.currency}`;
  }
}

interface OverrideProps {
  source: string;
  label: string;
  helperText?: string;
  isRequired?: boolean;
}

function MoneyField({ source, label }: OverrideProps): ReactElement {
  return (
    <FunctionField
      source={source}
      label={label}
      render={(record: Record<string, unknown>) => formatMoney(record[source] as Money)}
      textAlign="right"
    />
  );
}

function MoneyInput({ source, label, helperText, isRequired }: OverrideProps): ReactElement {
  const currency = useWatch({ name: `${source}.currency` }) as string | undefined;
  const digits = minorDigits(currency);
  const scale = 10 ** digits;
  return (
    <Box sx={{ display: 'flex', gap: 2, width: '100%', maxWidth: 520 }}>
      <NumberInput
        source={`${source}.amountMinor`}
        label={label}
        helperText={helperText}
        validate={isRequired ? requiredValue() : undefined}
        format={(minor: unknown) => (minor === null || minor === undefined || minor === '' ? '' : Number(minor) / scale)}
        parse={(major: string) => (major === '' || major === null ? null : Math.round(Number(major) * scale))}
        step={1 / scale}
        sx={{ flex: 2 }}
      />
      <TextInput
        source={`${source}.currency`}
        label="Currency"
        helperText="ISO 4217, e.g. EUR"
        validate={isRequired ? requiredValue() : undefined}
        parse={(value: string) => value.toUpperCase()}
        slotProps={{ htmlInput: { maxLength: 3 } }}
        sx={{ flex: 1 }}
      />
    </Box>
  );
}

/** Output types shown by a component of their own. */
export const fieldOverrides: Record<string, (props: OverrideProps) => ReactElement> = {
  Money: MoneyField,
};

/** Input types entered with a component of their own. */
export const inputOverrides: Record<string, (props: OverrideProps) => ReactElement> = {
  MoneyInput,
};
